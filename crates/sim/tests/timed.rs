//! Invariants of the timed model: bytes are conserved (every node
//! receives every byte exactly once, whoever sends it), the origin sends
//! what each system should, nobody beats the lower bound, and a seed
//! fixes the result.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use shoal_sim::rollout::lower_bound;
use shoal_sim::timed::{Relay, System, Timed, rollout};

fn small() -> Timed {
    let mut c = Timed::new(200);
    c.topology.nodes_per_rack = 10;
    c.topology.racks_per_row = 5;
    c.object_bytes = (256 << 20) + 12_345;
    c.stripe_bytes = 16 << 20;
    c
}

#[test]
fn every_node_receives_every_byte_once_and_the_origin_sends_its_share() {
    let mut relayed = small();
    relayed.relay = Relay::Star;
    relayed.piece_bytes = (3 << 20) + 7;
    for cfg in [small(), relayed] {
        conserved(&cfg);
    }
}

fn conserved(cfg: &Timed) {
    let cfg = cfg.clone();
    let n = cfg.topology.nodes as f64;
    let object = cfg.object_bytes as f64;
    let bound = lower_bound(&cfg);
    for system in [
        System::Shoal,
        System::ShoalNoRelay,
        System::Direct,
        System::Flat,
        System::Dht,
        System::Swarm,
    ] {
        let o = rollout(&cfg, system, 3).unwrap();
        assert!(
            (o.moved_bytes - n * object).abs() < 1.0,
            "{system:?}: {} bytes moved for {} nodes",
            o.moved_bytes,
            n
        );
        let origin_copies = o.origin_bytes / object;
        match system {
            System::Shoal | System::ShoalNoRelay | System::Flat | System::Swarm => {
                assert!(
                    (origin_copies - 1.0).abs() < 1e-9,
                    "{system:?}: {origin_copies}"
                )
            }
            System::Direct => assert!((origin_copies - n).abs() < 1e-6),
            System::Dht => assert!(
                origin_copies >= 1.0 - 1e-9 && origin_copies <= n + 1e-6,
                "{origin_copies}"
            ),
        }
        assert!(
            o.finish_s.iter().all(|t| t.is_finite()),
            "{system:?}: all finish"
        );
        let first = o.finish_s.iter().copied().fold(f64::INFINITY, f64::min);
        assert!(
            first >= bound * 0.999,
            "{system:?}: {first} s beats the bound {bound} s"
        );
        assert!(o.cross_row_bytes <= o.cross_rack_bytes && o.cross_rack_bytes <= o.moved_bytes);
    }
}

#[test]
fn rack_relays_keep_bytes_in_the_rack_and_spread_the_upload() {
    let mut cfg = small();
    cfg.relay = Relay::Star;
    cfg.piece_bytes = 4 << 20;
    cfg.readahead_bytes = 64 << 20;
    let object = cfg.object_bytes as f64;
    let relay = rollout(&cfg, System::Shoal, 3).unwrap();
    let plain = rollout(&cfg, System::ShoalNoRelay, 3).unwrap();
    assert!(
        relay.relayed_pulls > relay.pulls / 2,
        "most pulls go to a relay"
    );
    assert_eq!(plain.relayed_pulls, 0);
    assert!((relay.origin_bytes / object - 1.0).abs() < 1e-9);
    // A rack imports each byte about once: 20 racks, plus what the hop
    // sets' members fetch for themselves.
    let racks = (cfg.topology.nodes / cfg.topology.nodes_per_rack) as f64;
    assert!(
        relay.cross_rack_bytes < 0.5 * plain.cross_rack_bytes,
        "{} vs {}",
        relay.cross_rack_bytes / object,
        plain.cross_rack_bytes / object
    );
    assert!(relay.cross_rack_bytes / object < 3.0 * racks);
    // Upload is spread: the busiest node sends less than without relays.
    let max = |o: &shoal_sim::timed::Outcome| o.sent_bytes.iter().copied().fold(0.0, f64::max);
    assert!(
        max(&relay) < max(&plain),
        "{} vs {}",
        max(&relay) / object,
        max(&plain) / object
    );
    let sent: f64 = relay.sent_bytes.iter().sum();
    assert!(
        (sent + relay.origin_bytes - relay.moved_bytes).abs() < 1.0,
        "every byte has a sender"
    );
}

#[test]
fn a_seed_fixes_the_result_and_shoal_beats_the_baselines() {
    let cfg = small();
    let a = rollout(&cfg, System::Shoal, 5).unwrap();
    let b = rollout(&cfg, System::Shoal, 5).unwrap();
    assert_eq!(a.finish_s, b.finish_s);
    assert_eq!(a.steps, b.steps);
    let c = rollout(&cfg, System::Shoal, 6).unwrap();
    assert_ne!(a.finish_s, c.finish_s, "another seed, another placement");
    let last = |o: &shoal_sim::timed::Outcome| o.finish_s.iter().copied().fold(0.0, f64::max);
    let direct = rollout(&cfg, System::Direct, 5).unwrap();
    let flat = rollout(&cfg, System::Flat, 5).unwrap();
    assert!(last(&a) < last(&flat) && last(&flat) < last(&direct));
}

#[test]
fn after_a_scale_down_nobody_is_served_by_the_dead_and_shoal_pays_one_timeout_per_peer() {
    use shoal_sim::scaledown::{ScaleDown, run_all};
    let mut cfg = ScaleDown::new();
    cfg.timed.object_bytes = 128 << 20;
    cfg.timed.stripe_bytes = 16 << 20;
    cfg.joiners = 8;
    cfg.every_s = 1.0;
    let systems = [System::Shoal, System::Dht, System::Direct];
    let r = run_all(&cfg, &systems, 2, 2, &|| {}).unwrap();
    let object = cfg.timed.object_bytes as f64;
    for (s, o) in systems.iter().zip(&r.outcomes) {
        assert_eq!(o.dead_bytes, 0.0, "{s:?}: a vanished node sent bytes");
        for j in 0..cfg.joiners {
            let n = cfg.warm + j;
            assert!(
                o.finish_s[n].is_finite(),
                "{s:?}: joiner {j} never finished"
            );
            assert!(o.finish_s[n] >= o.start_s[n]);
        }
        // Joiners receive the object once each; warm nodes receive
        // nothing; whatever moved came from somewhere.
        assert!(
            (o.moved_bytes - cfg.joiners as f64 * object).abs() < 1.0,
            "{s:?}"
        );
    }
    let (shoal, dht) = (&r.outcomes[0], &r.outcomes[1]);
    assert_eq!(shoal.origin_bytes, 0.0, "the warm fleet holds everything");
    // One connect timeout per (joiner, vanished peer) at most, and only
    // before detection.
    let timeout = cfg.timed.failures.connect_timeout_ms / 1000.0;
    assert!(shoal.stale_wait_s <= (cfg.joiners * cfg.vanish) as f64 * timeout + 1e-9);
    // The DHT pays a whole dial timeout whenever it picks a dead record.
    assert!(dht.stale_attempts > 0);
    assert!(dht.stale_wait_s >= cfg.timed.failures.dht_dial_timeout_s);
}

#[test]
fn with_cut_links_no_byte_crosses_one_and_every_pull_finishes() {
    use shoal_sim::partition::run;
    let mut cfg = small();
    cfg.object_bytes = 64 << 20;
    let systems = [System::Shoal, System::Dht, System::Flat];
    let r = run(&cfg, 20, &[0.0, 0.1, 0.3], &systems, 7, 2, &|| {}).unwrap();
    for row in &r.rows {
        let o = &row.outcome;
        let who = format!("{:?} at {}", row.system, row.cut_share);
        assert_eq!(o.cut_bytes, 0.0, "{who}: bytes crossed a cut link");
        assert!(
            o.finish_s.iter().all(|t| t.is_finite()),
            "{who}: a pull never finished"
        );
        if row.cut_share == 0.0 {
            assert_eq!(o.cut_attempts, 0, "{who}");
        } else if row.system != System::Flat {
            assert!(o.cut_attempts > 0, "{who}: the cuts were never met");
        }
        // The warm nodes receive nothing; everyone else the whole object.
        let object = cfg.object_bytes as f64;
        let expect = (cfg.topology.nodes - 20) as f64 * object;
        // Relays also receive what they pass on, so at least that much.
        assert!(o.moved_bytes + 1.0 >= expect, "{who}");
    }
}

#[test]
fn under_churn_every_node_that_stays_gets_every_byte_once_and_the_dead_send_nothing() {
    use shoal_sim::churn::{Churn, run};
    let mut cfg = Churn::new(200);
    cfg.timed = small();
    // Slow links, so the rollout lasts through the churn.
    cfg.timed.network.nic_gbps = 1.0;
    cfg.timed.network.origin_gbps = 1.0;
    cfg.rates = vec![0.0, 0.6];
    cfg.period_s = 5.0;
    let systems = [System::Shoal, System::Flat, System::Dht, System::Direct];
    let r = run(&cfg, &systems, 4, 2, &|| {}).unwrap();
    let object = cfg.timed.object_bytes as f64;
    for row in &r.rows {
        let o = &row.outcome;
        let who = format!("{:?} at {}", row.system, row.rate);
        assert_eq!(o.dead_bytes, 0.0, "{who}: a vanished node sent bytes");
        let mut stayers = 0;
        for n in 0..o.finish_s.len() {
            if o.left_s[n].is_finite() {
                assert!(o.received_bytes[n] <= object + 1.0, "{who}: node {n}");
                continue;
            }
            stayers += 1;
            assert!(o.finish_s[n].is_finite(), "{who}: node {n} never finished");
            // A resumed transfer continues from the bytes received: no
            // byte arrives twice.
            assert!(
                (o.received_bytes[n] - object).abs() < 1.0,
                "{who}: node {n} received {} of {object}",
                o.received_bytes[n]
            );
        }
        assert_eq!(stayers + row.leaves, 200 + row.joins, "{who}");
        if row.rate == 0.0 {
            assert_eq!((row.leaves, row.joins, o.broken), (0, 0, 0), "{who}");
            assert_eq!(o.window_pulls, 0, "{who}");
        } else {
            assert!(row.leaves > 0 && row.joins > 0, "{who}");
            assert!(o.window_pulls > 0, "{who}");
        }
    }
    let shoal = &r.rows[4].outcome;
    assert_eq!(r.rows[4].system, System::Shoal);
    assert!(
        shoal.broken > 0 && shoal.resumes > 0,
        "churn mid-rollout cut no shoal transfer off: {} {}",
        shoal.broken,
        shoal.resumes
    );
    let again = run(&cfg, &systems[..1], 4, 1, &|| {}).unwrap();
    assert_eq!(again.rows[1].outcome.finish_s, shoal.finish_s);
    assert_eq!(again.rows[1].outcome.received_bytes, shoal.received_bytes);
}
