//! The roster: every member this node knows of, with its state, as the
//! data plane and `shoal status` read it.

use crate::identity::Peer;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A member's state as this node sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MemberState {
    /// Answering probes.
    Alive,
    /// Missed a probe; still routed to until declared down.
    Suspect,
    /// Failed, or left; never routed to.
    Down,
}

impl From<foca::State> for MemberState {
    fn from(s: foca::State) -> Self {
        match s {
            foca::State::Alive => MemberState::Alive,
            foca::State::Suspect => MemberState::Suspect,
            foca::State::Down => MemberState::Down,
        }
    }
}

impl From<MemberState> for foca::State {
    fn from(s: MemberState) -> Self {
        match s {
            MemberState::Alive => foca::State::Alive,
            MemberState::Suspect => foca::State::Suspect,
            MemberState::Down => foca::State::Down,
        }
    }
}

/// One member as this node knows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// Its identity.
    pub peer: Peer,
    /// SWIM incarnation (refutations of suspicion raise it).
    pub incarnation: u16,
    /// Its state.
    pub state: MemberState,
    /// When this node last saw its state change, in Unix milliseconds.
    pub changed_ms: u64,
}

/// Every member this node knows of, itself included, by name.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Roster {
    /// Bumped on every change, so readers can tell views apart.
    pub version: u64,
    /// Whether this node knows at least one other live member.
    pub connected: bool,
    /// The members, by name.
    pub members: BTreeMap<String, Record>,
}

impl Roster {
    /// Members that are alive or suspect.
    pub fn live(&self) -> impl Iterator<Item = &Record> + '_ {
        self.members
            .values()
            .filter(|r| r.state != MemberState::Down)
    }

    /// Records a state for `peer`, replacing an older identity of the same
    /// name; returns whether anything changed.
    pub(crate) fn set(&mut self, peer: &Peer, state: MemberState, now_ms: u64) -> bool {
        match self.members.get_mut(&peer.name) {
            Some(r) if r.peer == *peer && r.state == state => false,
            // News about an identity older than the one we hold is stale.
            Some(r) if r.peer.generation > peer.generation => false,
            Some(r) => {
                r.peer = peer.clone();
                r.state = state;
                r.changed_ms = now_ms;
                true
            }
            None => {
                self.members.insert(
                    peer.name.clone(),
                    Record {
                        peer: peer.clone(),
                        incarnation: 0,
                        state,
                        changed_ms: now_ms,
                    },
                );
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(name: &str, generation: u64) -> Peer {
        Peer {
            name: name.into(),
            data: ([127, 0, 0, 1], 1).into(),
            gossip: ([127, 0, 0, 1], 2).into(),
            labels: Vec::new(),
            generation,
        }
    }

    #[test]
    fn stale_generations_do_not_overwrite_newer_ones() {
        let mut r = Roster::default();
        assert!(r.set(&peer("a", 2), MemberState::Alive, 1));
        assert!(!r.set(&peer("a", 2), MemberState::Alive, 2));
        // The old self going down is stale news about a restarted node.
        assert!(!r.set(&peer("a", 1), MemberState::Down, 3));
        assert_eq!(r.members["a"].state, MemberState::Alive);
        assert!(r.set(&peer("a", 2), MemberState::Down, 4));
        assert_eq!(r.live().count(), 0);
        assert!(r.set(&peer("a", 3), MemberState::Alive, 5));
        assert_eq!(r.members["a"].peer.generation, 3);
    }
}
