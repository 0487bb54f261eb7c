//! Rack relays: who pulls a piece of a stripe for its whole rack.
//!
//! Without them every client's first hop is one of the stripe's `V * b`
//! L2 members, so those few nodes upload the stripe to the whole fleet
//! while most upload capacity sits idle, and every rack imports each
//! byte once per member. With them, each piece of a stripe (a few MiB)
//! has one relay per rack, dealt by the rack's relay plan for the object
//! (`share.rs`, [`View::relay_plan`]). The relay pulls the piece
//! along its own path (H2, H1, owner; the owner alone reads the origin)
//! and the rest of the rack pulls it from the relay as it arrives, so a
//! rack imports each byte once and each node relays about one rack-size
//! share of the object. This module keeps the racks, which members never
//! use a relay ([`View::hop_set`]) and whether relays ask owners directly.
//!
//! Every node of a rack ranks the same members the same way, and when
//! the first one dies the next takes over with the others' order
//! unchanged. Waits stay acyclic: a stripe's first hops and owners (its
//! [`View::hop_set`]) never use a relay for it, and a relay serves a
//! relayed request along its own path only, never through another rack
//! member, so a relay edge is followed only by path edges, which lead to
//! the owner.

use crate::hash::{Domain, Key, NodeId, mix64, probe};
use crate::topology::{Labels, MAX_DEPTH, PrefixId, TopoRow};
use crate::view::View;
use std::collections::HashMap;

/// Members by rack: the interned prefix of a member's full label list.
/// Members without labels are in no rack.
#[derive(Clone, Debug, Default)]
pub(crate) struct Racks(HashMap<PrefixId, Vec<NodeId>>);

/// The rack of a member with `labels`, interned as `row`.
fn rack_of(labels: &Labels, row: &TopoRow) -> Option<PrefixId> {
    let d = labels.depth();
    (1..=MAX_DEPTH).contains(&d).then(|| row[d - 1])
}

impl Racks {
    /// Records member `id` in its rack.
    pub(crate) fn add(&mut self, id: NodeId, labels: &Labels, row: &TopoRow) {
        if let Some(r) = rack_of(labels, row) {
            let members = self.0.entry(r).or_default();
            if !members.contains(&id) {
                members.push(id);
            }
        }
    }

    /// Forgets member `id`.
    pub(crate) fn remove(&mut self, id: NodeId, labels: &Labels, row: &TopoRow) {
        if let Some(r) = rack_of(labels, row)
            && let Some(members) = self.0.get_mut(&r)
        {
            members.retain(|&m| m != id);
            if members.is_empty() {
                self.0.remove(&r);
            }
        }
    }
}

/// Where `member` stands in its rack's order for the object with key
/// `object`: members are ranked by this score, highest first.
pub(crate) fn score(object: Key, member: NodeId) -> u64 {
    mix64(probe(object, Domain::Rack, 0, 0) ^ mix64(member.0))
}

impl View {
    /// The members of `client`'s rack, alive or not, in no set order; or
    /// `None` when `client` is not a member, carries fewer labels than the
    /// deepest member, or its rack has fewer members than
    /// `rack_relay_min`, alive or not. See [`View::relay_plan`].
    pub(crate) fn rack_members(&self, client: NodeId) -> Option<&[NodeId]> {
        let i = self.index_of(client)?;
        if !self.in_relay_rack_at(i) {
            return None;
        }
        let rack = rack_of(&self.members[i].labels, &self.topo[i])?;
        self.racks.0.get(&rack).map(Vec::as_slice)
    }

    /// Whether `client` pulls through rack relays at all: it is in a relay
    /// rack ([`View::in_relay_rack`]) with `rack_relay_min` live members
    /// or more (at least 2).
    pub fn has_rack_relays(&self, client: NodeId) -> bool {
        self.rack_members(client).is_some_and(|m| {
            m.iter().filter(|&&id| self.is_alive(id)).count() >= self.config.rack_relay_min.max(2)
        })
    }

    /// Whether rack relays pull their pieces from the owner directly
    /// instead of through the finger sets: the fleet has at least one
    /// relay rack (a rack of `rack_relay_min` members or more, alive or
    /// not) and no more than `V * b` of them. The finger sets exist to
    /// bound how many nodes ask an owner for a stripe; with relays, the
    /// owner is asked once per relay rack and piece, which is no more than
    /// its L2 set would be asked, so in a fleet that small the two extra
    /// hops only add copies: every L2 and H1 member would upload each
    /// stripe again and the relays would wait on them. Changes only when
    /// members join or leave, not when they die, so paths stay put while
    /// a node is down.
    pub fn relays_ask_owner(&self) -> bool {
        self.relays_ask_owner
    }

    /// Recomputes [`View::relays_ask_owner`] after a join or a leave.
    pub(crate) fn count_relay_racks(&mut self) {
        let min = self.config.rack_relay_min.max(2);
        let racks = self.racks.0.values().filter(|m| m.len() >= min).count();
        self.relay_racks = racks;
        self.relays_ask_owner = racks > 0 && racks <= self.config.v * self.b;
    }

    /// Whether `id` is a member of a relay rack: it carries the full
    /// label list and its rack has `rack_relay_min` members or more,
    /// alive or not.
    pub fn in_relay_rack(&self, id: NodeId) -> bool {
        self.index_of(id).is_some_and(|i| self.in_relay_rack_at(i))
    }

    fn in_relay_rack_at(&self, i: usize) -> bool {
        if self.members[i].labels.depth() < self.depth() {
            return false;
        }
        rack_of(&self.members[i].labels, &self.topo[i])
            .and_then(|r| self.racks.0.get(&r))
            .is_some_and(|m| m.len() >= self.config.rack_relay_min.max(2))
    }

    /// Whether `a` and `b` are live or dead members of one rack (both carry
    /// the full set of labels and share it).
    pub fn same_rack(&self, a: NodeId, b: NodeId) -> bool {
        let (Some(i), Some(j)) = (self.index_of(a), self.index_of(b)) else {
            return false;
        };
        let d = self.depth();
        d > 0
            && self.members[i].labels.depth() == d
            && self.members[j].labels.depth() == d
            && self.topo[i][d - 1] == self.topo[j][d - 1]
    }

    /// The nodes that never pull a stripe of `key` through a rack relay,
    /// sorted: its owner (which reads the origin) and, unless relays ask
    /// the owner directly ([`View::relays_ask_owner`]), its L2 set (the
    /// first hop of every client's path, which serves the relays). Everyone
    /// else may: an L1 member whose relay's path reaches it as H1 goes on
    /// to the owner itself (the agent's flight ranks make it start its own
    /// fetch instead of waiting on itself; the simulator erases the loop).
    /// The owner's stand-ins are not in the set: while views disagree on
    /// the owner's death a stand-in may receive a stripe twice, once for
    /// itself through a relay and once as the end of a path, but the two
    /// are separate flights and neither waits on the other.
    pub fn hop_set(&self, key: Key) -> Vec<NodeId> {
        let mut ids: Vec<u32> = if self.relays_ask_owner {
            Vec::new()
        } else {
            self.l2_indices(key).iter().copied().collect()
        };
        ids.extend(self.successor_indices(key, 1).iter().copied());
        let mut out: Vec<NodeId> = ids.into_iter().map(|i| self.id_at(i)).collect();
        out.sort_unstable();
        out.dedup();
        out
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use crate::{Key, Labels, Member, NodeId, PlacementConfig, View};
    use rand::SeedableRng;

    /// `racks` racks of `size` nodes in two rows of one zone: node `i`
    /// is in rack `i / size`.
    pub(crate) fn fleet(racks: usize, size: usize) -> View {
        let members = (0..racks * size).map(|i| {
            let rack = i / size;
            Member::new(
                format!("n{i}"),
                Labels::new(["z", &format!("row{}", rack % 2), &format!("rack{rack}")]),
            )
        });
        View::with_members(PlacementConfig::default(), members).unwrap()
    }

    pub(crate) fn id(i: usize) -> NodeId {
        NodeId::from_name(&format!("n{i}"))
    }

    #[test]
    fn every_first_hop_and_owner_is_in_the_hop_set() {
        let v = fleet(40, 25);
        assert!(!v.relays_ask_owner(), "40 racks > V * b = 20");
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
        for s in 0..20 {
            let key = Key::for_stripe(b"obj", s);
            let set = v.hop_set(key);
            for c in (0..1000).step_by(7) {
                let p = v.path(id(c), key, &mut rng);
                let [h2, _, owner] = p.chain().unwrap();
                for h in [h2, owner] {
                    assert!(
                        set.binary_search(&h).is_ok(),
                        "stripe {s}: {h:?} not in the hop set"
                    );
                }
            }
            // A small share of the fleet: most nodes use their rack relay.
            assert!(set.len() < 1000 / 40, "{} of 1000", set.len());
        }
    }

    #[test]
    fn in_a_fleet_of_few_racks_relays_ask_the_owner() {
        // 4 racks of 8: b = 4, so V * b = 8 relay racks or fewer.
        let mut v = fleet(4, 8);
        assert!(v.relays_ask_owner());
        v.join(Member::new("bare", Labels::default())).unwrap();
        let bare = NodeId::from_name("bare");
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let mut tree = 0;
        for s in 0..50 {
            let key = Key::for_stripe(b"obj", s);
            let owner = v.owner(key).unwrap();
            assert_eq!(v.hop_set(key), vec![owner]);
            for c in 0..32 {
                let p = v.path(id(c), key, &mut rng);
                let want: &[NodeId] = if id(c) == owner { &[] } else { &[owner] };
                assert_eq!(p.hops(), want, "stripe {s}, n{c}");
            }
            // A node in no rack still goes through the finger sets.
            tree += usize::from(v.path(bare, key, &mut rng).hops().len() > 1);
        }
        assert!(tree > 0);
        // A death leaves paths alone; enough new racks turn it off.
        v.mark_dead(id(3));
        assert!(v.relays_ask_owner());
        for r in 4..12 {
            for i in 0..4 {
                let labels = Labels::new(["z", "row9", &format!("rack{r}")]);
                v.join(Member::new(format!("m{r}-{i}"), labels)).unwrap();
            }
        }
        assert!(!v.relays_ask_owner(), "12 racks > V * b = 8");
    }
}
