//! Paths: which nodes a client's request for a key visits, and in which
//! order it falls back when they fail.
//!
//! For client `C` and key `K`:
//! `H2 = nearest_tier(L2(K))`, `H1 = nearest_tier(L1(K, H2))` (or uniform
//! with probability `eps`), `O = owner(K)`; the request goes
//! `C → H2 → H1 → O`, and `s1 … s(r-1)` are the fallback tail.
//!
//! In a fleet whose rack relays ask the owner directly
//! ([`View::relays_ask_owner`]), a client in a relay rack skips the finger
//! sets: its chain is `[C, O, O, O]`.
//!
//! The chain `[C, H2, H1, O]` is *loop-erased*: from each node the request
//! jumps past that node's last appearance in the chain. So no hop is `C`,
//! no node appears twice, and the last hop is always the owner (or the path
//! is empty because `C` is the owner). Plain removal of duplicates would
//! not do: for `H2 = O` it would give `[O, H1]`, and H1, at the end of the
//! path, would fetch from the origin as if it owned the key.
//!
//! Randomness comes only from the caller's RNG, and every path draws
//! exactly three `u64`s from it (H2 tie-break, eps coin, H1 pick), so two
//! runs that share a seed share every coin whatever rule they route by.

use crate::hash::{Key, NodeId};
use crate::select::Indices;
use crate::topology::{TopoRow, tier};
use crate::view::View;
use rand::Rng;
use smallvec::SmallVec;

/// Where a request for one key goes, as computed by its client.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Path {
    chain: Option<[NodeId; 3]>,
    hops: SmallVec<[NodeId; 3]>,
    fallbacks: SmallVec<[NodeId; 8]>,
}

impl Path {
    /// The hops in order, at most 3, never the client, the owner last. An
    /// empty list means the client is the owner (or nobody else is alive)
    /// and fetches from the origin itself.
    pub fn hops(&self) -> &[NodeId] {
        &self.hops
    }

    /// `[H2, H1, O]` as chosen, before collapsing; `None` when nobody is
    /// alive. For accounting (the simulator) and tests.
    pub fn chain(&self) -> Option<[NodeId; 3]> {
        self.chain
    }

    /// The owner's successors `s1 … s(r-1)` that are not hops, in order:
    /// stand-ins for the owner when it fails. The client itself may appear
    /// here; a client that reaches itself in this list stands in itself.
    pub fn fallbacks(&self) -> &[NodeId] {
        &self.fallbacks
    }
}

/// `⌊coin · n / 2^64⌋`: a uniform index below `n` from one coin.
#[inline]
fn uniform(coin: u64, n: usize) -> usize {
    ((u128::from(coin) * n as u128) >> 64) as usize
}

/// Whether `coin` falls below probability `p`.
#[inline]
fn below(coin: u64, p: f64) -> bool {
    ((coin >> 11) as f64) * (1.0 / (1u64 << 53) as f64) < p
}

impl View {
    /// The path for `client` to fetch `key`. `client` need not be a
    /// member (a node not yet in the view shares no topology with anyone).
    pub fn path<R: Rng + ?Sized>(&self, client: NodeId, key: Key, rng: &mut R) -> Path {
        let coins = [rng.next_u64(), rng.next_u64(), rng.next_u64()];
        let mut path = Path::default();
        let succ = self.successor_indices(key, self.config.replicas);
        let Some(&owner) = succ.first() else {
            return path;
        };
        let l2 = self.l2_indices(key);
        let j = if self.config.nearest_l2 {
            self.nearest(self.row_of(client), &l2, coins[0])
        } else {
            uniform(coins[0], l2.len())
        };
        // Finger sets are never empty while the owner is alive; should one
        // be, the hop collapses into the owner rather than panic.
        let h2 = l2.get(j).copied().unwrap_or(owner);
        let l1 = self.l1_indices(key, j % self.b);
        let eps = self.config.eps.unwrap_or(1.0 / self.b as f64);
        let k = if self.config.nearest_l1 && !below(coins[1], eps) {
            self.nearest(&self.topo[h2 as usize], &l1, coins[2])
        } else {
            uniform(coins[2], l1.len())
        };
        let mut h1 = l1.get(k).copied().unwrap_or(owner);
        // A client in a relay rack of a fleet whose relays ask the owner
        // directly skips the finger sets too (it reads whole stripes only
        // when it owns them or its relays fail).
        let mut h2 = h2;
        if self.relays_ask_owner && self.in_relay_rack(client) {
            (h2, h1) = (owner, owner);
        }

        let (h2, h1, owner) = (self.id_at(h2), self.id_at(h1), self.id_at(owner));
        path.chain = Some([h2, h1, owner]);
        let chain = [client, h2, h1, owner];
        let last = |id: NodeId| chain.iter().rposition(|&c| c == id).unwrap_or(0);
        let mut at = last(client);
        while at + 1 < chain.len() {
            let next = chain[at + 1];
            path.hops.push(next);
            at = last(next);
        }
        path.fallbacks = succ[1..]
            .iter()
            .map(|&i| self.id_at(i))
            .filter(|id| !path.hops.contains(id))
            .collect();
        path
    }

    /// Picks one of `candidates` at the smallest tier from `from`, uniformly
    /// among ties, with one coin from `rng`. Candidates that are not members
    /// count as sharing nothing. `None` for no candidates.
    pub fn nearest_tier<R: Rng + ?Sized>(
        &self,
        from: NodeId,
        candidates: &[NodeId],
        rng: &mut R,
    ) -> Option<NodeId> {
        let coin = rng.next_u64();
        if candidates.is_empty() {
            return None;
        }
        let depth = self.depth();
        let from = self.row_of(from);
        let nth = pick_min(candidates.len(), coin, |i| {
            tier(depth, from, self.row_of(candidates[i]))
        });
        Some(candidates[nth])
    }

    /// Index into `candidates` (non-empty) of a nearest-tier pick.
    fn nearest(&self, from: &TopoRow, candidates: &Indices, coin: u64) -> usize {
        let depth = self.depth();
        pick_min(candidates.len(), coin, |i| {
            tier(depth, from, &self.topo[candidates[i] as usize])
        })
    }
}

/// Among indices `0..n`, the `uniform(coin, ties)`-th of those whose
/// `tier_of` is smallest. Tiers are recomputed rather than stored: they are
/// a few integer compares each.
fn pick_min(n: usize, coin: u64, tier_of: impl Fn(usize) -> u8) -> usize {
    let (mut min, mut ties) = (u8::MAX, 0usize);
    for i in 0..n {
        let t = tier_of(i);
        if t < min {
            (min, ties) = (t, 1);
        } else if t == min {
            ties += 1;
        }
    }
    let nth = uniform(coin, ties);
    (0..n).filter(|&i| tier_of(i) == min).nth(nth).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uniform_covers_the_range() {
        assert_eq!(uniform(0, 5), 0);
        assert_eq!(uniform(u64::MAX, 5), 4);
        assert_eq!(uniform(u64::MAX / 2, 2), 0);
        assert_eq!(uniform(u64::MAX / 2 + 1, 2), 1);
    }

    #[test]
    fn below_respects_the_edges() {
        assert!(!below(0, 0.0));
        assert!(below(0, 1e-9));
        assert!(below(u64::MAX, 1.0));
        assert!(!below(u64::MAX, 0.999));
    }

    #[test]
    fn pick_min_takes_only_minimum_ties() {
        let tiers = [2, 0, 1, 0, 3];
        assert_eq!(pick_min(5, 0, |i| tiers[i]), 1);
        assert_eq!(pick_min(5, u64::MAX, |i| tiers[i]), 3);
    }
}
