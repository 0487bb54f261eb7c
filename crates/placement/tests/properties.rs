//! Properties of the placement core over random views: same view, same
//! answers; paths are short, distinct and avoid dead nodes; dead nodes are
//! never chosen; nearest-tier picks are at the minimum tier and fair.
// Tests panic on purpose when something is wrong.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{ids, key, rng};
use proptest::prelude::*;
use rand::seq::SliceRandom;
use shoal_placement::{Labels, Member, NodeId, PlacementConfig, View};
use std::collections::HashSet;

/// A random cluster: names, two-level labels and a dead subset.
#[derive(Debug, Clone)]
struct Cluster {
    members: Vec<Member>,
    dead: Vec<bool>,
}

fn cluster(max: usize) -> impl Strategy<Value = Cluster> {
    prop::collection::vec((0u8..3, 0u8..4, any::<bool>(), 0u8..5), 1..max).prop_map(|nodes| {
        let mut seen = HashSet::new();
        let mut members = Vec::new();
        let mut dead = Vec::new();
        for (i, (row, rack, labelled, fate)) in nodes.into_iter().enumerate() {
            let name = format!("n{i}-r{row}-k{rack}");
            if !seen.insert(name.clone()) {
                continue;
            }
            let labels = if labelled {
                Labels::new([format!("row-{row}"), format!("rack-{rack}")])
            } else {
                Labels::default()
            };
            members.push(Member::new(name, labels));
            dead.push(fate == 0);
        }
        Cluster { members, dead }
    })
}

fn build(c: &Cluster, config: PlacementConfig) -> View {
    let mut v = View::with_members(config, c.members.clone()).unwrap();
    for (m, &dead) in c.members.iter().zip(&c.dead) {
        if dead {
            v.mark_dead(m.id());
        }
    }
    v
}

/// Everything a node computes for `key`, for comparing two views.
fn answers(v: &View, k: shoal_placement::Key, clients: &[NodeId], seed: u64) -> String {
    let mut out = format!(
        "owner={:?} succ={:?} l2={:?}",
        v.owner(k),
        v.successors(k, 8),
        v.l2(k)
    );
    for h2 in v.l2(k) {
        out += &format!(" l1({h2})={:?}", v.l1(k, h2));
    }
    for (j, &c) in clients.iter().enumerate() {
        let mut r = rng(seed ^ j as u64);
        out += &format!(" path({c})={:?}", v.path(c, k, &mut r));
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Built in one batch, or joined one by one in a shuffled order with a
    /// node that comes and goes along the way: identical answers.
    #[test]
    fn same_view_in_any_order_gives_identical_answers(c in cluster(120), seed in any::<u64>()) {
        let a = build(&c, PlacementConfig::default());

        let mut order: Vec<usize> = (0..c.members.len()).collect();
        order.shuffle(&mut rng(seed));
        let mut b = View::new(PlacementConfig::default()).unwrap();
        let transient = Member::new("transient", Labels::new(["row-9", "rack-9", "deep"]));
        for (n, &i) in order.iter().enumerate() {
            b.join(c.members[i].clone()).unwrap();
            if c.dead[i] {
                b.mark_dead(c.members[i].id());
            }
            if n == order.len() / 2 {
                b.join(transient.clone()).unwrap();
            }
        }
        b.leave(transient.id());

        let clients = ids(&a);
        prop_assert_eq!(ids(&a), ids(&b));
        prop_assert_eq!(a.fan_base(), b.fan_base());
        for i in 0..20 {
            let k = key(seed.wrapping_add(i));
            prop_assert_eq!(answers(&a, k, &clients, seed), answers(&b, k, &clients, seed));
        }
    }

    /// Every path: at most 3 hops, distinct, none dead, never the client,
    /// the owner last (or no hops when the client owns the key); fallbacks
    /// are alive successors that are not hops.
    #[test]
    fn paths_are_short_distinct_alive_and_end_at_the_owner(
        c in cluster(300),
        seed in any::<u64>(),
        eps in prop::option::of(0.0f64..=1.0),
    ) {
        let config = PlacementConfig { eps, ..Default::default() };
        let v = build(&c, config);
        let mut r = rng(seed);
        let mut clients = ids(&v);
        clients.push(NodeId::from_name("not-a-member"));
        for (j, &client) in clients.iter().enumerate().take(40) {
            let k = key(seed.wrapping_add(j as u64));
            let p = v.path(client, k, &mut r);
            let hops = p.hops();
            let Some(owner) = v.owner(k) else {
                prop_assert!(hops.is_empty() && p.chain().is_none());
                continue;
            };
            prop_assert!(hops.len() <= 3);
            prop_assert!(!hops.contains(&client));
            prop_assert_eq!(hops.iter().collect::<HashSet<_>>().len(), hops.len());
            prop_assert!(hops.iter().all(|&h| v.is_alive(h)));
            match hops.last() {
                Some(&last) => prop_assert_eq!(last, owner),
                None => prop_assert_eq!(client, owner),
            }
            let [h2, h1, o] = p.chain().unwrap();
            prop_assert_eq!(o, owner);
            // A client in a relay rack of a fleet with few relay racks
            // goes to the owner directly; any other through the fingers.
            if v.relays_ask_owner() && v.in_relay_rack(client) {
                prop_assert_eq!([h2, h1], [owner, owner]);
            } else {
                prop_assert!(v.l2(k).contains(&h2));
                prop_assert!(v.l1(k, h2).contains(&h1));
            }
            let succ = v.successors(k, 8);
            for f in p.fallbacks() {
                prop_assert!(v.is_alive(*f) && succ[1..].contains(f) && !hops.contains(f));
            }
        }
    }

    /// Dead members never appear in owners, successors or finger sets, and
    /// the sets have their sizes: V*b, b, r, or every alive node if fewer.
    #[test]
    fn dead_nodes_are_never_chosen(c in cluster(300), seed in any::<u64>()) {
        let v = build(&c, PlacementConfig::default());
        let (alive, b) = (v.alive_count(), v.fan_base());
        for i in 0..30 {
            let k = key(seed.wrapping_add(i));
            let l2 = v.l2(k);
            prop_assert_eq!(l2.len(), (2 * b).min(alive));
            prop_assert_eq!(v.successors(k, 8).len(), 8.min(alive));
            let mut all = v.successors(k, 8);
            all.extend(&l2);
            for h2 in &l2 {
                let l1 = v.l1(k, *h2);
                prop_assert_eq!(l1.len(), b.min(alive));
                prop_assert_eq!(l1.iter().collect::<HashSet<_>>().len(), l1.len());
                all.extend(l1);
            }
            prop_assert_eq!(l2.iter().collect::<HashSet<_>>().len(), l2.len());
            prop_assert!(all.iter().all(|&n| v.is_alive(n)));
        }
    }

    /// A nearest-tier pick is always at the smallest tier among the
    /// candidates, from any member.
    #[test]
    fn nearest_tier_picks_the_minimum_tier(c in cluster(200), seed in any::<u64>(), picks in 1usize..40) {
        let v = build(&c, PlacementConfig::default());
        let all = ids(&v);
        let mut r = rng(seed);
        for (j, &from) in all.iter().enumerate().take(30) {
            let mut cands = all.clone();
            cands.shuffle(&mut rng(seed ^ j as u64));
            cands.truncate(picks);
            let got = v.nearest_tier(from, &cands, &mut r).unwrap();
            let min = cands.iter().map(|&x| v.tier(from, x).unwrap()).min().unwrap();
            prop_assert_eq!(v.tier(from, got).unwrap(), min);
        }
    }
}

/// Ties are spread evenly. From a node in rack 0, candidates are five rack
/// mates (tier 0) and ten nodes elsewhere; 100,000 picks with a fixed seed
/// must look uniform over the five: a chi-square statistic below 18.47
/// (p = 0.001 with 4 degrees of freedom), and never a pick outside them.
#[test]
fn nearest_tier_spreads_evenly_over_ties() {
    let v = common::dc_view("dc", 64); // racks of 32
    let from = NodeId::from_name("dc-0");
    let mates: Vec<NodeId> = (1..6)
        .map(|i| NodeId::from_name(&format!("dc-{i}")))
        .collect();
    let mut cands: Vec<NodeId> = (32..42)
        .map(|i| NodeId::from_name(&format!("dc-{i}")))
        .collect();
    cands.extend(&mates);
    let mut r = rng(2026);
    let mut counts = [0u32; 5];
    let draws = 100_000u32;
    for _ in 0..draws {
        let got = v.nearest_tier(from, &cands, &mut r).unwrap();
        let slot = mates
            .iter()
            .position(|&m| m == got)
            .expect("a tier-0 candidate");
        counts[slot] += 1;
    }
    let expected = f64::from(draws) / 5.0;
    let chi2: f64 = counts
        .iter()
        .map(|&c| (f64::from(c) - expected).powi(2) / expected)
        .sum();
    assert!(chi2 < 18.47, "counts {counts:?}, chi-square {chi2:.2}");
}

/// eps-jitter: with eps = 0 H1 is always at the nearest tier from H2;
/// with eps = 1 it is uniform over L1(K, H2), so far nodes are picked too.
#[test]
fn eps_controls_how_often_h1_ignores_topology() {
    let client = NodeId::from_name("eps-5");
    let mut far_picks = [0u32; 2];
    for (slot, eps) in [0.0, 1.0].into_iter().enumerate() {
        let config = PlacementConfig {
            eps: Some(eps),
            ..Default::default()
        };
        let v = View::with_members(
            config,
            (0..2048).map(|i| common::dc_member("eps", i, 32, 16)),
        )
        .unwrap();
        let mut r = rng(9);
        for i in 0..3000 {
            let k = key(i);
            let [h2, h1, _] = v.path(client, k, &mut r).chain().unwrap();
            let l1 = v.l1(k, h2);
            let min = l1.iter().map(|&x| v.tier(h2, x).unwrap()).min().unwrap();
            if v.tier(h2, h1).unwrap() > min {
                far_picks[slot] += 1;
            }
        }
    }
    assert_eq!(far_picks[0], 0, "eps = 0 must always pick the nearest tier");
    // With b = 13 of 2048 nodes in 4 rows, most L1 members are farther than
    // the nearest one; uniform picks land on them most of the time.
    assert!(
        far_picks[1] > 1500,
        "eps = 1 picked far only {} times",
        far_picks[1]
    );
}
