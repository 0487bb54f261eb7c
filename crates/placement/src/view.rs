//! The membership view: who is in the cluster, where they sit, who is alive.
//!
//! A [`View`] is a plain value. The agent builds a new one when membership
//! changes and swaps it in atomically (every request reads one consistent
//! view); the simulator mutates one in place with [`View::join`],
//! [`View::leave`] and [`View::mark_dead`], which cost a memmove of the
//! ring at worst and a flag flip at best.
//!
//! Dead members stay on the ring but are never chosen: every lookup walks
//! past them exactly as if they had left, so marking a node dead and
//! removing it give the same answers.

use crate::config::{PlacementConfig, fan_base};
use crate::error::PlacementError;
use crate::hash::NodeId;
use crate::ring::Ring;
use crate::topology::{self, Interner, Labels, MAX_DEPTH, TopoRow, UNKNOWN_ROW};
use std::sync::Arc;

/// What the view knows of one member: its name and topology labels.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    /// The node's stable name; its id is `NodeId::from_name(name)`.
    pub name: Arc<str>,
    /// Ordered topology labels, widest first.
    pub labels: Labels,
}

impl Member {
    /// A member called `name` with the given labels.
    pub fn new(name: impl Into<Arc<str>>, labels: Labels) -> Self {
        Member {
            name: name.into(),
            labels,
        }
    }

    /// This member's node id.
    pub fn id(&self) -> NodeId {
        NodeId::from_name(&self.name)
    }
}

/// A cluster membership view plus the placement settings it is read with.
#[derive(Clone, Debug)]
pub struct View {
    pub(crate) config: PlacementConfig,
    pub(crate) ring: Ring,
    /// Per node index: is it alive.
    pub(crate) alive: Vec<bool>,
    /// Per node index: interned topology prefixes.
    pub(crate) topo: Vec<TopoRow>,
    /// Per node index: name and labels.
    pub(crate) members: Vec<Member>,
    interner: Interner,
    pub(crate) alive_count: usize,
    /// `b`, derived from the member count (alive or not).
    pub(crate) b: usize,
    /// Members by rack (the interned prefix of all their labels), alive
    /// or not, for the rack relay (`rack.rs`).
    pub(crate) racks: crate::rack::Racks,
    /// See [`View::relays_ask_owner`]; kept by joins and leaves.
    pub(crate) relays_ask_owner: bool,
    /// Racks with `rack_relay_min` members or more, alive or not; kept by
    /// joins and leaves.
    pub(crate) relay_racks: usize,
}

/// Largest member count; node indices must fit in a `u32`.
const MAX_MEMBERS: usize = u32::MAX as usize - 1;

impl View {
    /// An empty view.
    pub fn new(config: PlacementConfig) -> Result<Self, PlacementError> {
        config.validate()?;
        Ok(View {
            config,
            ring: Ring::default(),
            alive: Vec::new(),
            topo: Vec::new(),
            members: Vec::new(),
            interner: Interner::default(),
            alive_count: 0,
            b: fan_base(0),
            racks: crate::rack::Racks::default(),
            relays_ask_owner: false,
            relay_racks: 0,
        })
    }

    /// A view of `members`, all alive, built in one pass (cheaper than
    /// joining them one by one). The order of `members` does not matter.
    pub fn with_members<I>(config: PlacementConfig, members: I) -> Result<Self, PlacementError>
    where
        I: IntoIterator<Item = Member>,
    {
        let mut view = View::new(config)?;
        let mut all: Vec<(NodeId, Member)> = Vec::new();
        for m in members {
            check_member(&m)?;
            all.push((m.id(), m));
        }
        if all.len() > MAX_MEMBERS {
            return Err(PlacementError::TooManyMembers { max: MAX_MEMBERS });
        }
        // As with `join`, the last entry for a name wins: reverse, then a
        // stable sort puts it first among equals, and dedup keeps the first.
        all.reverse();
        all.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.name.cmp(&b.1.name)));
        all.dedup_by(|b, a| a.0 == b.0 && a.1.name == b.1.name);
        if let Some(w) = all.windows(2).find(|w| w[0].0 == w[1].0) {
            return Err(collision(&w[0].1, &w[1].1));
        }
        let mut points = Vec::with_capacity(all.len());
        for (id, m) in all {
            view.topo.push(view.interner.row(&m.labels));
            view.racks
                .add(id, &m.labels, &view.topo[view.topo.len() - 1]);
            view.interner.add_member(m.labels.depth());
            view.alive.push(true);
            view.members.push(m);
            points.push(id.0);
        }
        view.alive_count = points.len();
        view.b = fan_base(points.len());
        view.ring = Ring::from_sorted(points);
        view.count_relay_racks();
        Ok(view)
    }

    /// Adds `member`, alive. A member that is already in the view (same
    /// name) is marked alive and takes the new labels: a restarted node
    /// returns to its old place. Returns its id.
    pub fn join(&mut self, member: Member) -> Result<NodeId, PlacementError> {
        check_member(&member)?;
        let id = member.id();
        match self.ring.search(id.0) {
            Ok(i) => {
                if self.members[i].name != member.name {
                    return Err(collision(&self.members[i], &member));
                }
                self.interner.remove_member(self.members[i].labels.depth());
                self.interner.add_member(member.labels.depth());
                self.racks
                    .remove(id, &self.members[i].labels, &self.topo[i]);
                self.topo[i] = self.interner.row(&member.labels);
                self.racks.add(id, &member.labels, &self.topo[i]);
                self.members[i] = member;
                self.set_alive_at(i, true);
            }
            Err(i) => {
                if self.members.len() >= MAX_MEMBERS {
                    return Err(PlacementError::TooManyMembers { max: MAX_MEMBERS });
                }
                self.ring.insert(i, id.0);
                self.topo.insert(i, self.interner.row(&member.labels));
                self.racks.add(id, &member.labels, &self.topo[i]);
                self.interner.add_member(member.labels.depth());
                self.alive.insert(i, true);
                self.members.insert(i, member);
                self.alive_count += 1;
                self.b = fan_base(self.members.len());
            }
        }
        self.count_relay_racks();
        Ok(id)
    }

    /// Removes `id`. Returns whether it was a member.
    pub fn leave(&mut self, id: NodeId) -> bool {
        let Some(i) = self.index_of(id) else {
            return false;
        };
        if self.alive[i] {
            self.alive_count -= 1;
        }
        self.ring.remove(i);
        let row = self.topo.remove(i);
        self.alive.remove(i);
        let m = self.members.remove(i);
        self.racks.remove(id, &m.labels, &row);
        self.interner.remove_member(m.labels.depth());
        self.b = fan_base(self.members.len());
        self.count_relay_racks();
        true
    }

    /// Marks `id` dead: it stays a member (so `b` does not change) but is
    /// never chosen. Returns whether it was a member.
    pub fn mark_dead(&mut self, id: NodeId) -> bool {
        self.set_alive(id, false)
    }

    /// Marks `id` alive again. Returns whether it was a member.
    pub fn mark_alive(&mut self, id: NodeId) -> bool {
        self.set_alive(id, true)
    }

    fn set_alive(&mut self, id: NodeId, alive: bool) -> bool {
        match self.index_of(id) {
            Some(i) => {
                self.set_alive_at(i, alive);
                true
            }
            None => false,
        }
    }

    fn set_alive_at(&mut self, i: usize, alive: bool) {
        if self.alive[i] != alive {
            self.alive[i] = alive;
            if alive {
                self.alive_count += 1;
            } else {
                self.alive_count -= 1;
            }
        }
    }

    /// The settings this view places with.
    pub fn config(&self) -> &PlacementConfig {
        &self.config
    }

    /// Members, alive or dead.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Whether the view has no members.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Members that may be chosen.
    pub fn alive_count(&self) -> usize {
        self.alive_count
    }

    /// `b = max(2, ceil(N^(1/3)))` over all members, alive or dead, so
    /// that a failure does not reshuffle every finger set.
    pub fn fan_base(&self) -> usize {
        self.b
    }

    /// Whether `id` is a member.
    pub fn contains(&self, id: NodeId) -> bool {
        self.index_of(id).is_some()
    }

    /// Whether `id` is a member and alive.
    pub fn is_alive(&self, id: NodeId) -> bool {
        self.index_of(id).is_some_and(|i| self.alive[i])
    }

    /// The member `id`, if present.
    pub fn member(&self, id: NodeId) -> Option<&Member> {
        self.index_of(id).map(|i| &self.members[i])
    }

    /// Every member in ring order, with its id and whether it is alive.
    pub fn members(&self) -> impl Iterator<Item = (NodeId, &Member, bool)> + '_ {
        self.ring
            .points()
            .iter()
            .zip(&self.members)
            .zip(&self.alive)
            .map(|((&p, m), &a)| (NodeId(p), m, a))
    }

    /// The tier between two members (0 = nearest); `None` if either is not
    /// a member.
    pub fn tier(&self, a: NodeId, b: NodeId) -> Option<u8> {
        let (a, b) = (self.index_of(a)?, self.index_of(b)?);
        Some(topology::tier(
            self.interner.depth(),
            &self.topo[a],
            &self.topo[b],
        ))
    }

    /// The deepest label list among members.
    pub(crate) fn depth(&self) -> usize {
        self.interner.depth()
    }

    /// The topology row of `id`, or one that shares nothing if unknown.
    pub(crate) fn row_of(&self, id: NodeId) -> &TopoRow {
        match self.index_of(id) {
            Some(i) => &self.topo[i],
            None => &UNKNOWN_ROW,
        }
    }

    pub(crate) fn index_of(&self, id: NodeId) -> Option<usize> {
        self.ring.search(id.0).ok()
    }

    /// The id of node index `i`.
    #[inline]
    pub(crate) fn id_at(&self, i: u32) -> NodeId {
        NodeId(self.ring.point(i as usize))
    }
}

fn check_member(m: &Member) -> Result<(), PlacementError> {
    if m.name.is_empty() {
        return Err(PlacementError::EmptyName);
    }
    if m.labels.depth() > MAX_DEPTH {
        return Err(PlacementError::TooManyLabels {
            name: m.name.to_string(),
            depth: m.labels.depth(),
            max: MAX_DEPTH,
        });
    }
    Ok(())
}

fn collision(existing: &Member, new: &Member) -> PlacementError {
    PlacementError::IdCollision {
        existing: existing.name.to_string(),
        new: new.name.to_string(),
        id: new.id(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(name: &str) -> Member {
        Member::new(name, Labels::new(["z", "r1"]))
    }

    #[test]
    fn join_leave_and_liveness() {
        let mut v = View::new(PlacementConfig::default()).unwrap();
        let a = v.join(m("a")).unwrap();
        let b = v.join(m("b")).unwrap();
        assert_eq!((v.len(), v.alive_count()), (2, 2));
        assert!(v.mark_dead(a));
        assert!(!v.is_alive(a) && v.contains(a));
        assert_eq!(v.alive_count(), 1);
        // Rejoining under the same name revives it in place.
        assert_eq!(v.join(m("a")).unwrap(), a);
        assert_eq!((v.len(), v.alive_count()), (2, 2));
        assert!(v.leave(b));
        assert!(!v.leave(b));
        assert_eq!((v.len(), v.alive_count()), (1, 1));
        assert!(!v.mark_dead(b));
    }

    #[test]
    fn bad_members_are_refused() {
        let mut v = View::new(PlacementConfig::default()).unwrap();
        assert_eq!(
            v.join(Member::new("", Labels::default())),
            Err(PlacementError::EmptyName)
        );
        let deep = Member::new("x", Labels::new(["a"; MAX_DEPTH + 1]));
        assert!(matches!(
            v.join(deep),
            Err(PlacementError::TooManyLabels { .. })
        ));
        assert!(v.is_empty());
    }

    #[test]
    fn with_members_matches_joining_and_dedups() {
        let names = ["n1", "n2", "n3", "n2"];
        let built =
            View::with_members(PlacementConfig::default(), names.iter().map(|n| m(n))).unwrap();
        let mut joined = View::new(PlacementConfig::default()).unwrap();
        for n in names {
            joined.join(m(n)).unwrap();
        }
        let ids = |v: &View| v.members().map(|(id, _, _)| id).collect::<Vec<_>>();
        assert_eq!(ids(&built), ids(&joined));
        assert_eq!(built.len(), 3);
    }
}
