//! Relay shares: which member of a rack relays each piece of an object.
//!
//! A relay uploads each piece it relays to every other member of its rack,
//! so with equal shares each member of a rack of `n` uploads `(n - 1) / n`
//! of the object. A stripe's owner uploads more: when relays ask the owner
//! directly ([`View::relays_ask_owner`]), every relay rack's relay pulls
//! the stripe from it. In a small fleet an object has few stripes per
//! member and ownership is uneven (in a 16-node fleet one member may own 5
//! of 32 stripes and another none), and the member that uploads most sets
//! a node-bound rollout's pace. So a rack shares its relaying by water
//! filling: each member's predicted upload is its relay share times
//! `n - 1` plus its owned bytes times the relay racks that ask it, and the
//! shares make those totals even; a member whose owner duty alone is above
//! that level relays nothing. In a fleet with more relay racks than `V * b`
//! relays go through the finger sets, an owner uploads each stripe to a
//! few hops only, and the shares are equal.
//!
//! Ownership is weighed by ring position ([`View::home_index`]), which a
//! death does not move: when a relay dies its pieces pass to the next
//! member in rank order and every other piece keeps its relay. Pieces are
//! dealt to the shares by a golden-ratio stride, so consecutive pieces,
//! which are in flight together, go to members far apart in the order.

use crate::hash::{Key, NodeId};
use crate::rack::score;
use crate::view::View;

/// How one rack shares the relaying of one object, from one member's view
/// of the membership: the rack's members, alive or not, in rank order, and
/// the pieces each relays. Every member of the rack with the same view
/// computes the same plan. Empty when its client has no rack relays.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RelayPlan {
    /// The rack's members, alive or not, ranked by a hash of (object,
    /// member).
    ranked: Vec<NodeId>,
    /// `ends[k]`: the dealt positions `[ends[k - 1], ends[k])` go to
    /// `ranked[k]`; the last is `pieces`.
    ends: Vec<u64>,
    /// The object's pieces, at least 1.
    pieces: u64,
    /// Piece `p` is dealt position `p * stride mod pieces`; coprime with
    /// `pieces`, so every position is dealt once.
    stride: u64,
}

impl View {
    /// How `client`'s rack shares the relaying of the object with key
    /// `object` (see [`Key::for_object`]), whose stripes are `stripes`
    /// (each stripe's key and length, the whole object) and which is cut
    /// into `pieces` pieces, counted across the object as the callers of
    /// [`RelayPlan::relays`] count them. Empty when `client` is not a
    /// member, carries fewer labels than the deepest member, or its rack
    /// has fewer members than `rack_relay_min`, alive or not. With no
    /// `stripes` the shares are equal.
    pub fn relay_plan(
        &self,
        client: NodeId,
        object: Key,
        stripes: &[(Key, u64)],
        pieces: u64,
    ) -> RelayPlan {
        let Some(members) = self.rack_members(client) else {
            return RelayPlan::default();
        };
        let mut scored: Vec<(u64, NodeId)> =
            members.iter().map(|&id| (score(object, id), id)).collect();
        scored.sort_unstable_by(|a, b| b.cmp(a));
        let ranked: Vec<NodeId> = scored.into_iter().map(|(_, id)| id).collect();
        let askers = if self.relays_ask_owner {
            self.relay_racks as u128
        } else {
            0
        };
        let mut duty = vec![0u128; ranked.len()];
        let mut bytes = 0u128;
        for &(key, len) in stripes {
            bytes += u128::from(len);
            if askers == 0 {
                continue;
            }
            let Some(home) = self.home_index(key).map(|i| self.id_at(i)) else {
                continue;
            };
            if let Some(k) = ranked.iter().position(|&m| m == home) {
                duty[k] += askers * u128::from(len);
            }
        }
        let fanout = ranked.len() as u128 - 1;
        let relayed = water_fill(&duty, bytes * fanout);
        let total: u128 = relayed.iter().sum();
        let pieces = pieces.max(1);
        let mut sum = 0u128;
        let ends = relayed
            .iter()
            .map(|&x| {
                sum += x;
                (sum * u128::from(pieces) / total) as u64
            })
            .collect();
        RelayPlan {
            ranked,
            ends,
            pieces,
            stride: stride(pieces),
        }
    }
}

/// Uploads that even out `duty` plus each share, `total` in all: every
/// share `level - duty` for one water level, or 0 where the duty is above
/// it. With `total` 0, equal shares. At least one share is positive.
fn water_fill(duty: &[u128], total: u128) -> Vec<u128> {
    if total == 0 {
        return vec![1; duty.len()];
    }
    let mut sorted = duty.to_vec();
    sorted.sort_unstable();
    let (mut sum, mut level) = (0u128, 0u128);
    for (k, &d) in sorted.iter().enumerate() {
        sum += d;
        let t = (total + sum) / (k as u128 + 1);
        if t <= d {
            break;
        }
        level = t;
    }
    duty.iter().map(|&d| level.saturating_sub(d)).collect()
}

/// The stride pieces are dealt with: the integer nearest `pieces / phi`
/// that is coprime with `pieces`, at least 1.
fn stride(pieces: u64) -> u64 {
    // 2^32 / phi, rounded.
    let mut g = ((u128::from(pieces) * 2_654_435_769) >> 32) as u64;
    g = g.max(1);
    while gcd(g, pieces) != 1 {
        g += 1;
    }
    g
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

impl RelayPlan {
    /// The relays of piece `piece` (counted across the object), best
    /// first: the member it is dealt to, then the rest of the rack in rank
    /// order, the dead left out. The first is the relay; a client that is
    /// the relay, or finds the list empty, fetches along its own path.
    /// Empty when the plan is, or fewer than `rack_relay_min` members (at
    /// least 2) are alive in `view`. Callers also skip relays for stripes
    /// whose [`View::hop_set`] holds the client.
    pub fn relays(&self, view: &View, piece: u64) -> Vec<NodeId> {
        let n = self.ranked.len();
        if n == 0 {
            return Vec::new();
        }
        let q = (u128::from(piece % self.pieces) * u128::from(self.stride)
            % u128::from(self.pieces)) as u64;
        let first = self.ends.partition_point(|&e| e <= q);
        let live: Vec<NodeId> = (0..n)
            .map(|k| self.ranked[(first + k) % n])
            .filter(|&id| view.is_alive(id))
            .collect();
        if live.len() < view.config.rack_relay_min.max(2) {
            return Vec::new();
        }
        live
    }

    /// Each member of the rack, in rank order, with the number of pieces
    /// it relays while every member is alive.
    pub fn shares(&self) -> Vec<(NodeId, u64)> {
        let mut start = 0;
        self.ranked
            .iter()
            .zip(&self.ends)
            .map(|(&id, &end)| {
                let n = end - start;
                start = end;
                (id, n)
            })
            .collect()
    }

    /// Whether the plan has no relays (its client has no relay rack).
    pub fn is_empty(&self) -> bool {
        self.ranked.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::{stride, water_fill};
    use crate::rack::tests::{fleet, id};
    use crate::{Key, Labels, Member, NodeId, PlacementConfig, View};
    use std::collections::HashMap;

    const MIB: u64 = 1 << 20;

    /// The stripes of an object of `count` stripes of 16 MiB.
    fn stripes(count: u64) -> Vec<(Key, u64)> {
        (0..count)
            .map(|i| (Key::for_stripe(b"obj", i), 16 * MIB))
            .collect()
    }

    #[test]
    fn strides_deal_every_position_once() {
        for pieces in 1..300u64 {
            let g = stride(pieces);
            let mut seen = vec![false; pieces as usize];
            for p in 0..pieces {
                seen[(p * g % pieces) as usize] = true;
            }
            assert!(seen.iter().all(|&s| s), "{pieces} pieces, stride {g}");
        }
    }

    #[test]
    fn water_filling_evens_out_uploads() {
        assert_eq!(water_fill(&[0, 0, 0], 0), vec![1, 1, 1]);
        assert_eq!(water_fill(&[0, 0, 0], 30), vec![10, 10, 10]);
        // 10 + 6 = 0 + 16 = 4 + 12; 100 is above the level.
        assert_eq!(water_fill(&[10, 0, 4, 100], 34), vec![6, 16, 12, 0]);
    }

    #[test]
    fn a_rack_agrees_on_one_relay_per_piece_and_shares_pieces_evenly() {
        // 24 racks > V * b: relays go through the finger sets, shares are
        // equal.
        let v = fleet(24, 16);
        assert!(!v.relays_ask_owner());
        let object = Key::for_object(b"obj");
        let plan = v.relay_plan(id(16), object, &stripes(400), 1600);
        let mut first = HashMap::<NodeId, u64>::new();
        for member in 17..32 {
            assert_eq!(v.relay_plan(id(member), object, &stripes(400), 1600), plan);
        }
        for piece in 0..1600 {
            let ranked = plan.relays(&v, piece);
            assert_eq!(ranked.len(), 16, "every live member of rack 1");
            *first.entry(ranked[0]).or_default() += 1;
        }
        assert_eq!(first.len(), 16);
        assert!(first.values().all(|&n| n == 100), "{first:?}");
        // Pieces in flight together go to different members.
        let window: std::collections::HashSet<NodeId> =
            (40..48).map(|p| plan.relays(&v, p)[0]).collect();
        assert!(window.len() >= 6, "{window:?}");
        // Another object ranks the rack another way.
        let starts: std::collections::HashSet<NodeId> = (0..40)
            .map(|o| {
                v.relay_plan(id(16), Key::for_object(&[o]), &[], 1)
                    .relays(&v, 0)[0]
            })
            .collect();
        assert!(starts.len() > 8, "{starts:?}");
    }

    #[test]
    fn owners_relay_less_and_uploads_even_out() {
        // 2 racks of 8: relays ask the owner, who uploads each stripe to
        // both racks' relays.
        let v = fleet(2, 8);
        assert!(v.relays_ask_owner());
        let object = Key::for_object(b"obj");
        let all = stripes(32);
        let mut owned = HashMap::<NodeId, u64>::new();
        for &(key, len) in &all {
            *owned.entry(v.owner(key).unwrap()).or_default() += len;
        }
        let pieces = 128;
        let piece = 4 * MIB;
        for rack in 0..2 {
            let plan = v.relay_plan(id(rack * 8), object, &all, pieces);
            let upload = |id: NodeId, relayed: u64| {
                7 * relayed * piece + 2 * owned.get(&id).copied().unwrap_or(0)
            };
            let even: Vec<u64> = plan.shares().iter().map(|&(m, _)| upload(m, 16)).collect();
            let fair: Vec<u64> = plan.shares().iter().map(|&(m, n)| upload(m, n)).collect();
            assert_eq!(plan.shares().iter().map(|s| s.1).sum::<u64>(), pieces);
            let (lo, hi) = (fair.iter().min().unwrap(), fair.iter().max().unwrap());
            // Each share is within a piece of exact, so uploads are within
            // two pieces of relaying (7 uploads each) of even, unless an
            // owner's duty alone is above the level.
            let owner_max = 2 * owned.values().max().unwrap();
            assert!(hi - lo <= 2 * 7 * piece || *hi == owner_max, "{fair:?}");
            assert!(hi <= even.iter().max().unwrap(), "{fair:?} vs {even:?}");
            // Whoever owns more relays no more.
            for (a, &(ma, na)) in plan.shares().iter().enumerate() {
                for &(mb, nb) in &plan.shares()[a + 1..] {
                    let (oa, ob) = (owned.get(&ma), owned.get(&mb));
                    if oa > ob {
                        assert!(na <= nb);
                    }
                }
            }
        }
    }

    #[test]
    fn a_dead_relay_hands_over_to_the_next_and_the_plan_stays() {
        let mut v = fleet(2, 8);
        let object = Key::for_object(b"obj");
        let plan = v.relay_plan(id(0), object, &stripes(32), 128);
        let before = plan.relays(&v, 7);
        v.mark_dead(before[0]);
        assert_eq!(v.relay_plan(id(1), object, &stripes(32), 128), plan);
        assert_eq!(plan.relays(&v, 7), before[1..]);
        v.mark_alive(before[0]);
        assert_eq!(plan.relays(&v, 7), before);
    }

    #[test]
    fn small_or_unlabelled_racks_have_no_relays() {
        let none = |v: &View, c: NodeId| {
            let plan = v.relay_plan(c, Key(1), &[], 8);
            assert!(!v.has_rack_relays(c));
            plan.relays(v, 0).is_empty()
        };
        assert!(none(&fleet(4, 3), id(0)), "3 < rack_relay_min");
        let mut v = fleet(2, 8);
        assert!(none(&v, NodeId::from_name("stranger")));
        v.join(Member::new("bare", Labels::default())).unwrap();
        v.join(Member::new("half", Labels::new(["z", "row0"])))
            .unwrap();
        assert!(none(&v, NodeId::from_name("bare")));
        assert!(none(&v, NodeId::from_name("half")));
        assert_eq!(v.relay_plan(id(0), Key(1), &[], 8).relays(&v, 0).len(), 8);
        // Too few alive: no relays, though the plan stands.
        for i in 1..6 {
            v.mark_dead(id(i));
        }
        assert!(none(&v, id(0)));
        let off = View::with_members(
            PlacementConfig {
                rack_relay_min: usize::MAX,
                ..PlacementConfig::default()
            },
            fleet(2, 8).members().map(|(_, m, _)| m.clone()),
        )
        .unwrap();
        assert!(none(&off, id(0)));
    }

    #[test]
    fn leaving_and_relabelled_members_leave_their_rack() {
        let mut v = fleet(2, 8);
        let len = |v: &View, c: usize| v.relay_plan(id(c), Key(9), &[], 4).relays(v, 1).len();
        v.leave(id(3));
        assert_eq!(len(&v, 0), 7);
        v.join(Member::new("n4", Labels::new(["z", "row1", "rack1"])))
            .unwrap();
        assert_eq!(len(&v, 0), 6);
        assert_eq!(len(&v, 8), 9);
    }
}
