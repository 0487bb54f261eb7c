//! Nanoseconds per path computation at 10,000 and 100,000 nodes.
//!
//! `cargo bench -p shoal-placement --bench path` prints criterion's
//! `time: [low mid high]` per node count: the time of one `View::path`
//! call (owner and successors, L2, L1, nearest-tier picks, collapse) on a
//! datacenter-shaped view (32 nodes per rack, 16 racks per row).
#![allow(missing_docs)]

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use shoal_placement::{Key, Labels, Member, NodeId, PlacementConfig, View};
use std::hint::black_box;

fn datacenter(n: usize) -> View {
    let members = (0..n).map(|i| {
        let rack = i / 32;
        Member::new(
            format!("node-{i}"),
            Labels::new([format!("row-{}", rack / 16), format!("rack-{rack}")]),
        )
    });
    match View::with_members(PlacementConfig::default(), members) {
        Ok(v) => v,
        Err(e) => panic!("building the benchmark view: {e}"),
    }
}

fn bench_path(c: &mut Criterion) {
    let mut group = c.benchmark_group("path");
    for n in [10_000usize, 100_000] {
        let view = datacenter(n);
        let clients: Vec<NodeId> = view.members().map(|(id, _, _)| id).collect();
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let mut i = 0u64;
        group.bench_with_input(BenchmarkId::from_parameter(n), &view, |b, view| {
            b.iter(|| {
                i = i.wrapping_add(1);
                let client = clients[(i as usize * 7919) % clients.len()];
                let key = Key::for_stripe(b"sha256:bench", i);
                black_box(view.path(client, key, &mut rng))
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench_path);
criterion_main!(benches);
