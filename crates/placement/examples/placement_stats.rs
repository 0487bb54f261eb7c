//! Prints the placement figures the foundation issue asks for:
//! owner balance at 10,000 nodes over 10,000,000 keys, the fraction of
//! owners that move when one node joins or leaves at 1,000 nodes, and, for
//! context, how evenly finger-set membership and path lengths spread.
//!
//! `cargo run --release -p shoal-placement --example placement_stats`
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use shoal_placement::{Key, Labels, Member, NodeId, PlacementConfig, View};
use std::collections::HashMap;
use std::time::Instant;

fn dc(prefix: &str, n: usize) -> View {
    View::with_members(
        PlacementConfig::default(),
        (0..n).map(|i| {
            let rack = i / 32;
            Member::new(
                format!("{prefix}-{i}"),
                Labels::new([format!("row-{}", rack / 16), format!("rack-{rack}")]),
            )
        }),
    )
    .unwrap()
}

fn ratio(counts: &[u64]) -> (f64, f64) {
    let mean = counts.iter().sum::<u64>() as f64 / counts.len() as f64;
    let mut sorted = counts.to_vec();
    sorted.sort_unstable();
    let p99 = sorted[sorted.len() * 99 / 100] as f64;
    let max = *sorted.last().unwrap() as f64;
    (max / mean, p99 / mean)
}

fn main() {
    // Owner balance.
    let (n, keys) = (10_000usize, 10_000_000u64);
    let v = dc("bal", n);
    let index: HashMap<NodeId, usize> = v
        .members()
        .enumerate()
        .map(|(i, (id, _, _))| (id, i))
        .collect();
    let t = Instant::now();
    let mut load = vec![0u64; n];
    for i in 0..keys {
        load[index[&v.owner(Key::for_stripe(b"balance", i)).unwrap()]] += 1;
    }
    let per_owner = t.elapsed().as_nanos() as f64 / keys as f64;
    let (max, p99) = ratio(&load);
    println!(
        "owner balance, N = {n}, {keys} keys: max/mean {max:.3}, p99/mean {p99:.3} ({per_owner:.0} ns per owner lookup)"
    );

    // Movement.
    let (n, keys) = (1_000usize, 100_000u64);
    let mut join_moved = 0usize;
    let mut leave_moved = 0usize;
    let trials = 10;
    for t in 0..trials {
        let base = dc(&format!("mv{t}"), n);
        let owners = |v: &View| {
            (0..keys)
                .map(|i| v.owner(Key::for_stripe(b"mv", i)).unwrap())
                .collect::<Vec<_>>()
        };
        let before = owners(&base);
        let mut joined = base.clone();
        joined
            .join(Member::new(format!("mv{t}-new"), Labels::default()))
            .unwrap();
        join_moved += before
            .iter()
            .zip(owners(&joined))
            .filter(|(a, b)| *a != b)
            .count();
        let mut left = base.clone();
        let gone = base.members().nth(t * 97 % n).unwrap().0;
        left.leave(gone);
        leave_moved += before
            .iter()
            .zip(owners(&left))
            .filter(|(a, b)| *a != b)
            .count();
    }
    let denom = (trials as u64 * keys) as f64;
    println!(
        "owner movement, N = {n}, {keys} keys, mean of {trials} trials: join {:.5}, leave {:.5} of keys (1/N = {:.5}, bound 2/N = {:.5})",
        join_moved as f64 / denom,
        leave_moved as f64 / denom,
        1.0 / n as f64,
        2.0 / n as f64
    );

    // Finger-set membership and path lengths at 10k.
    let n = 10_000usize;
    let v = dc("fs", n);
    let ids: Vec<NodeId> = v.members().map(|(id, _, _)| id).collect();
    let index: HashMap<NodeId, usize> = ids.iter().enumerate().map(|(i, id)| (*id, i)).collect();
    let mut l2 = vec![0u64; n];
    let mut hops = [0u64; 4];
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let keys = 200_000u64;
    for i in 0..keys {
        let k = Key::for_stripe(b"fingers", i);
        for id in v.l2(k) {
            l2[index[&id]] += 1;
        }
        let client = ids[(i as usize * 7919) % n];
        hops[v.path(client, k, &mut rng).hops().len()] += 1;
    }
    let (max, p99) = ratio(&l2);
    println!("L2 membership, N = {n}, {keys} keys: max/mean {max:.3}, p99/mean {p99:.3}");
    println!(
        "path hops, N = {n}: 0: {:.4}, 1: {:.4}, 2: {:.4}, 3: {:.4}",
        hops[0] as f64 / keys as f64,
        hops[1] as f64 / keys as f64,
        hops[2] as f64 / keys as f64,
        hops[3] as f64 / keys as f64
    );

    // Cost of membership changes at 100k.
    let mut v = dc("churn", 100_000);
    let t = Instant::now();
    let rounds = 200u32;
    for i in 0..rounds {
        let id = v
            .join(Member::new(format!("churn-new-{i}"), Labels::default()))
            .unwrap();
        v.leave(id);
    }
    let change = t.elapsed() / (2 * rounds);
    let t = Instant::now();
    let some = v.members().next().unwrap().0;
    for _ in 0..rounds {
        v.mark_dead(some);
        v.mark_alive(some);
    }
    let flip = t.elapsed() / (2 * rounds);
    println!("view changes, N = 100000: join or leave {change:?}, mark dead or alive {flip:?}");
}
