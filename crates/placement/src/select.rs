//! Choosing nodes for a key: the owner, its successors and the finger sets.
//!
//! Every choice is a *multi-probe* lookup (Appleton and O'Reilly, 2015): a
//! slot hashes the key to `k` probe points and takes, among the first alive
//! node clockwise of each probe, the one closest to its probe. A node's
//! share is then about `(1 - e^(-k·gap))` instead of proportional to the
//! gap before its point, so the busiest node holds about `(k + 1) / k` of
//! the mean with one point per node and no virtual points.
//!
//! It keeps what consistent hashing promises: adding a node only moves keys
//! *to* it (it wins a slot it is now closest for), and removing one only
//! moves the keys it held. The successors are the next-best nodes in the
//! same ranking, so when an owner dies its first successor becomes owner.

use crate::hash::{Domain, Key, NodeId, probe};
use crate::view::View;
use smallvec::SmallVec;

/// A located probe: its point on the ring, the first ring point at or
/// after it, and that point's node index.
#[derive(Clone, Copy)]
struct Probe {
    x: u64,
    point: u64,
    i: usize,
}

/// One probe's clockwise walk while merging successors.
struct Walk {
    /// The probe point.
    x: u64,
    /// The node index the walk stands on.
    at: usize,
    /// That node's distance from `x`.
    dist: u64,
    /// Nodes passed so far.
    steps: usize,
}

/// Node indices, inline for every realistic finger-set size.
pub(crate) type Indices = SmallVec<[u32; 128]>;

/// Node indices already chosen for one set, with a bitmap filter so the
/// common "not chosen" answer costs one load.
pub(crate) struct Chosen {
    bits: [u64; 16],
    list: Indices,
}

impl Chosen {
    pub(crate) fn new() -> Self {
        Chosen {
            bits: [0; 16],
            list: Indices::new(),
        }
    }

    #[inline]
    fn contains(&self, i: u32) -> bool {
        let h = (i & 1023) as usize;
        self.bits[h >> 6] & (1 << (h & 63)) != 0 && self.list.contains(&i)
    }

    #[inline]
    fn insert(&mut self, i: u32) {
        let h = (i & 1023) as usize;
        self.bits[h >> 6] |= 1 << (h & 63);
        self.list.push(i);
    }

    pub(crate) fn into_indices(self) -> Indices {
        self.list
    }
}

impl View {
    /// Looks up the `k` probes of (`domain`, `slot`): for each, the probe
    /// point, the first ring point at or after it and that point's index.
    /// No data-dependent branches, so consecutive lookups' cache misses
    /// overlap; that is where a path's time goes.
    fn locate(&self, key: Key, domain: Domain, slot: u32, k: u32, out: &mut Vec<Probe>) {
        for p in 0..k {
            let x = probe(key, domain, slot, p);
            let (i, point) = self.ring.first_at_or_after(x);
            out.push(Probe { x, point, i });
        }
    }

    /// Of the located probes of one slot, the alive node not in `chosen`
    /// nearest clockwise after its probe; ties go to the lower index.
    fn resolve(&self, probes: &[Probe], chosen: &Chosen) -> Option<u32> {
        let mut best: Option<(u64, u32)> = None;
        for &Probe { x, point, i } in probes {
            let cand = if self.alive[i] && !chosen.contains(i as u32) {
                Some((point.wrapping_sub(x), i as u32))
            } else {
                self.walk(x, i, best, chosen)
            };
            best = match (best, cand) {
                (Some(b), Some(c)) => Some(b.min(c)),
                (b, c) => b.or(c),
            };
        }
        best.map(|(_, i)| i)
    }

    /// Walks clockwise from node index `i` (the first node at or after
    /// probe `x`) to the first alive node not in `chosen`, giving up once
    /// it is farther from `x` than `best`.
    fn walk(
        &self,
        x: u64,
        mut i: usize,
        best: Option<(u64, u32)>,
        chosen: &Chosen,
    ) -> Option<(u64, u32)> {
        let n = self.ring.len();
        for _ in 0..n {
            let d = self.ring.point(i).wrapping_sub(x);
            if best.is_some_and(|(bd, _)| d > bd) {
                return None;
            }
            if self.alive[i] && !chosen.contains(i as u32) {
                return Some((d, i as u32));
            }
            i += 1;
            if i == n {
                i = 0;
            }
        }
        None
    }

    /// The owner of `key`: the first alive node in its ranking.
    pub fn owner(&self, key: Key) -> Option<NodeId> {
        self.owner_index(key).map(|i| self.id_at(i))
    }

    pub(crate) fn owner_index(&self, key: Key) -> Option<u32> {
        if self.alive_count == 0 {
            return None;
        }
        let mut probes = Vec::with_capacity(self.config.owner_probes as usize);
        self.locate(key, Domain::Owner, 0, self.config.owner_probes, &mut probes);
        self.resolve(&probes, &Chosen::new())
    }

    /// The node index that owns `key` when every member is alive: its
    /// place on the ring, which deaths do not move. Weighs relay shares
    /// ([`View::relay_plan`]) so that a death does not reshuffle them.
    pub(crate) fn home_index(&self, key: Key) -> Option<u32> {
        if self.ring.len() == 0 {
            return None;
        }
        let mut probes = Vec::with_capacity(self.config.owner_probes as usize);
        self.locate(key, Domain::Owner, 0, self.config.owner_probes, &mut probes);
        probes
            .iter()
            .map(|p| (p.point.wrapping_sub(p.x), p.i as u32))
            .min()
            .map(|(_, i)| i)
    }

    /// The owner and the next `r - 1` distinct alive nodes in the key's
    /// ranking (fewer when fewer are alive). If the owner dies, the first
    /// successor becomes the owner.
    pub fn successors(&self, key: Key, r: usize) -> Vec<NodeId> {
        self.successor_indices(key, r)
            .into_iter()
            .map(|i| self.id_at(i))
            .collect()
    }

    /// A k-way merge over the probes' clockwise walks, by distance from each
    /// walk's probe: a node's rank is its smallest distance from any probe.
    pub(crate) fn successor_indices(&self, key: Key, r: usize) -> Indices {
        let want = r.min(self.alive_count);
        let mut out = Indices::new();
        if want == 0 {
            return out;
        }
        let mut walks: SmallVec<[Walk; 64]> = SmallVec::new();
        for p in 0..self.config.owner_probes {
            let x = probe(key, Domain::Owner, 0, p);
            let (at, _) = self.ring.first_at_or_after(x);
            let mut walk = Walk {
                x,
                at,
                dist: 0,
                steps: 0,
            };
            self.settle(&mut walk);
            walks.push(walk);
        }
        let n = self.ring.len();
        while out.len() < want {
            let live = walks.iter_mut().filter(|w| w.steps < n);
            let Some(w) = live.min_by_key(|w| (w.dist, w.at)) else {
                break; // every walk has gone round the ring
            };
            let i = w.at as u32;
            if !out.contains(&i) {
                out.push(i);
            }
            w.at = (w.at + 1) % n;
            w.steps += 1;
            self.settle(w);
        }
        out
    }

    /// Moves a walk forward to the next alive node and sets its distance.
    /// A walk whose `steps` reach the ring's size has seen every node.
    fn settle(&self, w: &mut Walk) {
        let n = self.ring.len();
        while w.steps < n && !self.alive[w.at] {
            w.at = (w.at + 1) % n;
            w.steps += 1;
        }
        w.dist = self.ring.point(w.at).wrapping_sub(w.x);
    }

    /// `L2(K)`: `V * b` distinct alive nodes (all of them when fewer are
    /// alive), slot by slot. Slot `j` is stable: it changes only when a
    /// node joins that is closer to one of its probes, or its node leaves.
    pub fn l2(&self, key: Key) -> Vec<NodeId> {
        self.ids(&self.l2_indices(key))
    }

    pub(crate) fn l2_indices(&self, key: Key) -> Indices {
        let count = (self.config.v * self.b).min(self.alive_count);
        self.fill(key, Domain::L2, 0, count)
    }

    /// `L1(K, H2)`: `b` distinct alive nodes for the H2 in slot `j` of
    /// `L2(K)`. The `V * b` slots share `b` groups (`j mod b`), so a hot
    /// key's L1 sets together span about `b^2` nodes. An `h2` that is not
    /// in `L2(K)` gets the group its id hashes to.
    pub fn l1(&self, key: Key, h2: NodeId) -> Vec<NodeId> {
        let l2 = self.l2_indices(key);
        let group = match l2.iter().position(|&i| self.id_at(i) == h2) {
            Some(j) => j % self.b,
            None => (crate::hash::mix64(h2.0) % self.b as u64) as usize,
        };
        self.ids(&self.l1_indices(key, group))
    }

    pub(crate) fn l1_indices(&self, key: Key, group: usize) -> Indices {
        let count = self.b.min(self.alive_count);
        // Slots are (group, i) packed in 32 bits; b < 65,536 for any
        // cluster below 2.8e14 nodes.
        self.fill(key, Domain::L1, (group as u32) << 16, count)
    }

    /// Fills `count` slots of `domain` in order, each with a node not
    /// chosen by an earlier slot. Every slot's probes are located before
    /// any is resolved.
    fn fill(&self, key: Key, domain: Domain, slot_base: u32, count: usize) -> Indices {
        let k = self.config.finger_probes;
        let mut probes = Vec::with_capacity(count * k as usize);
        for j in 0..count as u32 {
            self.locate(key, domain, slot_base | j, k, &mut probes);
        }
        let mut chosen = Chosen::new();
        for slot in probes.chunks(k as usize) {
            match self.resolve(slot, &chosen) {
                Some(i) => chosen.insert(i),
                None => break,
            }
        }
        chosen.into_indices()
    }

    fn ids(&self, indices: &[u32]) -> Vec<NodeId> {
        indices.iter().map(|&i| self.id_at(i)).collect()
    }
}

#[cfg(test)]
mod tests {
    use crate::hash::{Domain, probe};
    use crate::{Key, Labels, Member, NodeId, PlacementConfig, View};

    fn view(n: usize) -> View {
        View::with_members(
            PlacementConfig::default(),
            (0..n).map(|i| Member::new(format!("node-{i}"), Labels::default())),
        )
        .unwrap()
    }

    /// The ranking by definition: every alive node's smallest clockwise
    /// distance from any owner probe, ascending, ties to the lower index.
    fn naive_successors(v: &View, key: Key, r: usize) -> Vec<NodeId> {
        let points = v.ring.points();
        let mut ranked: Vec<(u64, usize)> = (0..points.len())
            .filter(|&i| v.alive[i])
            .map(|i| {
                let d = (0..v.config.owner_probes)
                    .map(|p| points[i].wrapping_sub(probe(key, Domain::Owner, 0, p)))
                    .min()
                    .unwrap();
                (d, i)
            })
            .collect();
        ranked.sort_unstable();
        ranked
            .iter()
            .take(r)
            .map(|&(_, i)| NodeId(points[i]))
            .collect()
    }

    #[test]
    fn successors_match_the_ranking_by_definition() {
        let mut v = view(60);
        let ids: Vec<_> = v.members().map(|(id, _, _)| id).collect();
        for id in ids.iter().step_by(4) {
            v.mark_dead(*id);
        }
        for k in 0..300 {
            let key = Key(crate::hash::mix64(k + 1000));
            assert_eq!(v.successors(key, 8), naive_successors(&v, key, 8));
            assert_eq!(v.successors(key, 100), naive_successors(&v, key, 100));
            assert_eq!(v.owner(key), naive_successors(&v, key, 1).first().copied());
        }
    }

    #[test]
    fn owner_is_first_successor_and_successors_are_distinct() {
        let v = view(50);
        for k in 0..500 {
            let key = Key(crate::hash::mix64(k));
            let s = v.successors(key, 8);
            assert_eq!(s.len(), 8);
            assert_eq!(v.owner(key), Some(s[0]));
            let mut d = s.clone();
            d.sort();
            d.dedup();
            assert_eq!(d.len(), 8);
        }
    }

    #[test]
    fn a_dead_owner_hands_over_to_its_first_successor() {
        let mut v = view(50);
        for k in 0..200 {
            let key = Key(crate::hash::mix64(k));
            let s = v.successors(key, 3);
            v.mark_dead(s[0]);
            assert_eq!(v.successors(key, 2), s[1..3].to_vec());
            v.mark_alive(s[0]);
        }
    }

    #[test]
    fn finger_sets_have_their_sizes() {
        let v = view(1000);
        assert_eq!(v.fan_base(), 10);
        let key = Key(7);
        let l2 = v.l2(key);
        assert_eq!(l2.len(), 20);
        for h2 in &l2 {
            assert_eq!(v.l1(key, *h2).len(), 10);
        }
        // Small clusters: every alive node.
        let small = view(3);
        assert_eq!(small.l2(key).len(), 3);
        assert_eq!(small.l1(key, small.l2(key)[0]).len(), 2);
        assert_eq!(small.successors(key, 8).len(), 3);
    }

    #[test]
    fn empty_and_all_dead_views_choose_nothing() {
        let mut v = view(2);
        let ids: Vec<_> = v.members().map(|(id, _, _)| id).collect();
        for id in ids {
            v.mark_dead(id);
        }
        assert_eq!(v.owner(Key(1)), None);
        assert!(v.successors(Key(1), 8).is_empty());
        assert!(v.l2(Key(1)).is_empty());
        assert!(view(0).l2(Key(1)).is_empty());
    }
}
