//! End to end under faults that need real processes: a peer killed
//! mid-transfer, a peer frozen with its sockets open, a rack relay
//! killed mid-piece. Corrupt bytes from
//! a peer, a cut link and a rotten stored copy are checked in-process
//! (`crates/agent/tests/data_path.rs`).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use common::*;
use nix::sys::signal::Signal;
use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Child;
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

/// Starts a get of `url` on every agent but `victim`.
fn gets_on_all_but(
    cluster: &Cluster,
    victim: usize,
    url: &str,
    digest: &str,
) -> Vec<(Child, PathBuf)> {
    (0..cluster.agents.len())
        .filter(|&i| i != victim)
        .map(|i| cluster.spawn_get(i, url, Some(digest)))
        .collect()
}

/// Waits for every get and checks it succeeded with the right bytes.
fn check_gets(cluster: &Cluster, gets: Vec<(Child, PathBuf)>, digest: &str) {
    for (child, out) in gets {
        let (ok, err) = finish(child, &out);
        assert!(ok, "get failed: {err}\nagents:\n{}", cluster.problems());
        assert_eq!(file_sha256(&out), digest);
    }
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
    let gets = gets_on_all_but(&cluster, victim, &url, &digest);
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
    check_gets(&cluster, gets, &digest);
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

/// A rack relay killed with SIGKILL in the middle of the rollout (two
/// racks of five, 4 MiB pieces): its rack's next-ranked members take its
/// pieces over from the bytes they hold, every other get completes with
/// the right digest, and, the victim owning no stripe, the origin sends
/// the object exactly once.
#[test]
fn gets_survive_a_rack_relay_killed_mid_piece() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let n = 10;
    let nginx = Nginx::start();
    let data = random_bytes(96 * MIB, 13);
    let digest = sha256(&data);
    let url = nginx.put("relay.bin", &data);
    let stripes = (data.len() / STRIPE) as u64;
    // In rack 0 (even agents), not agent 0, and owner of no stripe: its
    // loss costs relaying, never an origin fetch.
    let victim = (2..n)
        .step_by(2)
        .find(|&i| (0..stripes).all(|s| successors_of(n, &digest, s, 1)[0] != i))
        .expect("a member of rack 0 owns no stripe of this object");
    let mut cluster = Cluster::new(n, &["--stripe-size", "16MiB", "--store-budget", "1GiB"]);
    let gets = gets_on_all_but(&cluster, victim, &url, &digest);
    let outs: Vec<PathBuf> = gets.iter().map(|g| g.1.clone()).collect();
    // Killed once it relays and the gets are a fifth in, with the whole
    // object in flight (read-ahead 256 MiB): mid-piece for its rack.
    let total = (outs.len() * data.len()) as u64;
    let start = Instant::now();
    let relayed = || cluster.agents[victim].metric("shoal_rack_relay_bytes_total");
    while (relayed() == 0.0 || progress(&outs) < total / 5)
        && start.elapsed() < Duration::from_secs(120)
    {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(relayed() > 0.0, "the victim never relayed a piece");
    assert!(
        progress(&outs) >= total / 5 && outs.iter().all(|o| !o.exists()),
        "the kill must land mid-rollout: {} of {total}",
        progress(&outs)
    );
    eprintln!(
        "n{victim} killed having relayed {} bytes, the gets {} of {total} in",
        relayed(),
        progress(&outs)
    );
    cluster.agents[victim].kill();
    check_gets(&cluster, gets, &digest);
    assert_eq!(
        nginx.bytes_served("/relay.bin"),
        data.len() as u64,
        "the origin sent the object once"
    );
}
