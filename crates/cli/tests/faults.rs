//! End to end under faults that need real processes: a peer killed
//! mid-transfer, a peer frozen with its sockets open. Corrupt bytes from
//! a peer, a cut link and a rotten stored copy are checked in-process
//! (`crates/agent/tests/data_path.rs`).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use common::*;
use nix::sys::signal::Signal;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

static SERIAL: Mutex<()> = Mutex::new(());
const MIB: usize = 1 << 20;
const STRIPE: usize = 16 * MIB;

/// Which agent owns the most stripes of an object identified by `digest`.
fn busiest_owner(n: usize, digest: &str, stripes: u64) -> usize {
    let mut count: HashMap<usize, usize> = HashMap::new();
    for i in 0..stripes {
        *count.entry(successors_of(n, digest, i, 1)[0]).or_default() += 1;
    }
    // Agent 0 runs no get in these tests' fault role; pick among 1..n.
    (1..n)
        .max_by_key(|j| count.get(j).copied().unwrap_or(0))
        .unwrap()
}

/// Bytes written so far by gets in progress.
fn progress(outs: &[PathBuf]) -> u64 {
    outs.iter()
        .map(|o| std::fs::metadata(o.with_extension("shoal-part")).map_or(0, |m| m.len()))
        .sum()
}

/// Runs gets on every agent but `victim`, applies `fault` to the victim
/// once a fifth of the bytes have arrived, and checks every get.
fn rollout_with_fault(fault: impl FnOnce(&mut Agent)) {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let nginx = Nginx::start();
    let data = random_bytes(160 * MIB, 7);
    let digest = sha256(&data);
    let url = nginx.put("model.bin", &data);
    let mut cluster = Cluster::new(5, &["--stripe-size", "16MiB", "--store-budget", "1GiB"]);
    let victim = busiest_owner(5, &digest, (data.len() / STRIPE) as u64);
    let gets: Vec<_> = (0..5)
        .filter(|&i| i != victim)
        .map(|i| cluster.spawn_get(i, &url, Some(&digest)))
        .collect();
    let outs: Vec<PathBuf> = gets.iter().map(|g| g.1.clone()).collect();
    let total = (outs.len() * data.len()) as u64;
    let start = Instant::now();
    while progress(&outs) < total / 5 && start.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(5));
    }
    // The fault must land mid-transfer: a fifth in, no get finished, and
    // the victim (the busiest owner) already moving stripes.
    let at_fault = progress(&outs);
    assert!(
        at_fault >= total / 5,
        "the gets never got a fifth in: {at_fault} of {total}"
    );
    assert!(
        outs.iter().all(|o| !o.exists()),
        "a get had finished before the fault"
    );
    let victim_served = cluster.agents[victim].metric("shoal_served_bytes_total");
    assert!(victim_served > 0.0, "the victim had moved no bytes yet");
    fault(&mut cluster.agents[victim]);
    for (child, out) in gets {
        let (ok, err) = finish(child, &out);
        assert!(ok, "get failed: {err}\nagents:\n{}", cluster.problems());
        assert_eq!(file_sha256(&out), digest);
    }
    eprintln!("all gets done {:?} after the fault", start.elapsed());
}

#[test]
fn gets_survive_the_owner_killed_mid_transfer() {
    rollout_with_fault(|victim| victim.kill());
}

#[test]
fn gets_survive_a_frozen_peer() {
    rollout_with_fault(|victim| victim.signal(Signal::SIGSTOP));
}
