//! Invariants of the counting model that a wrong model would break:
//! determinism, pairing, conservation of pulls, no service from the dead,
//! pinned copies never lost.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use shoal_sim::counting::{Counting, Pinning, Rule, run};
use shoal_sim::placement;

fn small() -> Counting {
    let mut c = Counting::new(1024);
    c.topology.nodes_per_rack = 16;
    c.topology.racks_per_row = 8;
    c
}

#[test]
fn the_same_seed_gives_the_same_output() {
    let cfg = small();
    let a = placement::run(&cfg, 5, 3, 2, &|| {}).unwrap();
    let b = placement::run(&cfg, 5, 3, 1, &|| {}).unwrap();
    assert_eq!(a.table().markdown(), b.table().markdown());
    for (x, y) in a
        .pns
        .iter()
        .zip(&b.pns)
        .chain(a.uniform.iter().zip(&b.uniform))
    {
        assert_eq!(x.metrics, y.metrics);
        assert_eq!(x.counts, y.counts);
        assert_eq!(x.digests, y.digests);
    }
    let c = placement::run(&cfg, 6, 3, 2, &|| {}).unwrap();
    assert_ne!(a.pns[0].digests.demand, c.pns[0].digests.demand);
}

#[test]
fn paired_runs_share_placement_demand_and_coins_and_differ_in_routes() {
    let cfg = small();
    for seed in 1..4 {
        let p = run(&cfg, seed, Rule::Pns).unwrap();
        let u = run(&cfg, seed, Rule::Uniform).unwrap();
        assert_eq!(p.digests.demand, u.digests.demand, "seed {seed}: demand");
        assert_eq!(
            p.digests.placement, u.digests.placement,
            "seed {seed}: owners"
        );
        assert_eq!(p.counts.pulls, u.counts.pulls);
        assert_ne!(
            p.digests.routes, u.digests.routes,
            "seed {seed}: the rule must matter"
        );
    }
    // A different seed places the fleet differently.
    let a = run(&cfg, 1, Rule::Pns).unwrap();
    let b = run(&cfg, 2, Rule::Pns).unwrap();
    assert_ne!(a.digests.placement, b.digests.placement);
}

#[test]
fn every_pull_is_served_once_and_the_origin_once_per_stripe() {
    let mut cfg = small();
    cfg.workload.requests_per_node = 2.5;
    for rule in [Rule::Pns, Rule::Uniform] {
        let r = run(&cfg, 9, rule).unwrap();
        let c = &r.counts;
        assert_eq!(c.pulls, c.local_hits + c.moved);
        assert_eq!(
            c.served, c.moved,
            "each pull that moved bytes has one server"
        );
        assert_eq!(c.origin_fetches, c.stripes_requested, "capacity suffices");
        assert!(r.metrics.client_hops <= 3.0 && r.metrics.client_hops > 0.0);
        assert!(r.metrics.system_hops >= r.metrics.client_hops);
        assert!(r.metrics.cross_row <= r.metrics.cross_rack);
    }
    // With room for one stripe per node, evictions send pulls back to the
    // origin, and the counts still add up.
    cfg.capacity = Some(1);
    let r = run(&cfg, 9, Rule::Pns).unwrap();
    assert!(r.counts.origin_fetches > r.counts.stripes_requested);
    assert_eq!(r.counts.pulls, r.counts.local_hits + r.counts.moved);
}

#[test]
fn dead_nodes_neither_ask_nor_serve() {
    let mut cfg = small();
    cfg.dead = 0.25;
    for rule in [Rule::Pns, Rule::Uniform] {
        let r = run(&cfg, 4, rule).unwrap();
        assert_eq!(r.counts.served_by_dead, 0);
        // About three quarters of the nodes ask, once each, for 10 stripes.
        let askers = r.counts.pulls / 10;
        assert!((700..840).contains(&askers), "{askers}");
    }
}

#[test]
fn pinned_replicas_survive_a_tiny_cache() {
    let mut cfg = small();
    cfg.capacity = Some(1);
    for how in [Pinning::Successors, Pinning::Nearest, Pinning::Uniform] {
        cfg.pinning = Some(how);
        let r = run(&cfg, 2, Rule::Pns).unwrap();
        assert_eq!(
            r.counts.origin_fetches, r.counts.stripes_requested,
            "{how:?}: the owner keeps every stripe"
        );
        // r - 1 pushes per stripe, less those to nodes that already held
        // a copy (a client or hop among the replicas).
        let most = 7 * r.counts.stripes_requested;
        assert!(
            (most * 9 / 10..=most).contains(&r.counts.pushes),
            "{how:?}: {} pushes for {} stripes",
            r.counts.pushes,
            r.counts.stripes_requested
        );
    }
}

#[test]
fn nearest_tier_routing_keeps_traffic_closer_and_eager_push_pushes() {
    let mut cfg = small();
    let p = run(&cfg, 3, Rule::Pns).unwrap();
    let u = run(&cfg, 3, Rule::Uniform).unwrap();
    assert!(p.metrics.congestion < u.metrics.congestion);
    assert!(p.metrics.cross_row < u.metrics.cross_row);
    cfg.eager_push = true;
    let e = run(&cfg, 3, Rule::Pns).unwrap();
    assert!(e.counts.pushes > 0);
    assert!(e.metrics.system_hops > e.metrics.client_hops);
}

#[test]
fn stores_smaller_than_the_working_set_send_pulls_back_to_the_origin() {
    use shoal_sim::capacity::{Capacity, run as capacity};
    let mut cfg = Capacity {
        nodes: 200,
        disk_bytes: 1 << 30,
        share: 0.5,
        model_bytes: 1 << 30,
        models: vec![2],
        stripe_bytes: vec![16 << 20],
        requests_per_node: 1.0,
        alpha: 1.0,
    };
    // Room for half a model per node: owners lose stripes they own.
    let tight = capacity(&cfg, 1, 2, &|| {}).unwrap();
    assert_eq!(tight.rows[0].capacity_stripes, 32);
    assert!(
        tight.rows[0].origin_load > 1.0,
        "{}",
        tight.rows[0].origin_load
    );
    // Room for both models: each stripe comes from the origin once.
    cfg.share = 4.0;
    let roomy = capacity(&cfg, 1, 2, &|| {}).unwrap();
    assert_eq!(roomy.rows[0].origin_load, 1.0);
    assert!(roomy.rows[0].hit_ratio > tight.rows[0].hit_ratio);
}
