//! Invariants of the timed model: bytes are conserved (every node
//! receives every byte exactly once, whoever sends it), the origin sends
//! what each system should, nobody beats the lower bound, and a seed
//! fixes the result.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use shoal_sim::rollout::lower_bound;
use shoal_sim::timed::{System, Timed, rollout};

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
    let cfg = small();
    let n = cfg.topology.nodes as f64;
    let object = cfg.object_bytes as f64;
    let bound = lower_bound(&cfg);
    for system in [System::Shoal, System::Direct, System::Flat, System::Dht] {
        let o = rollout(&cfg, system, 3).unwrap();
        assert!(
            (o.moved_bytes - n * object).abs() < 1.0,
            "{system:?}: {} bytes moved for {} nodes",
            o.moved_bytes,
            n
        );
        let origin_copies = o.origin_bytes / object;
        match system {
            System::Shoal | System::Flat => {
                assert!(
                    (origin_copies - 1.0).abs() < 1e-9,
                    "{system:?}: {origin_copies}"
                )
            }
            System::Direct => assert!((origin_copies - n).abs() < 1e-6),
            System::Dht => assert!(origin_copies >= 1.0 && origin_copies <= n),
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
