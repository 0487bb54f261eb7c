//! End to end under faults: a peer killed mid-transfer, a peer frozen with
//! its sockets open, a peer behind a proxy that corrupts bytes.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use common::*;
use nix::sys::signal::Signal;
use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
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

/// A TCP proxy that flips one byte in every `every` bytes it relays from
/// the server, past the first 4 KiB of each connection (the headers).
fn corrupting_proxy(target: SocketAddr, every: u64, flips: Arc<AtomicU64>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for client in listener.incoming().flatten() {
            let Ok(server) = TcpStream::connect(target) else {
                continue;
            };
            let (mut c_in, mut s_out) = (client.try_clone().unwrap(), server.try_clone().unwrap());
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut c_in, &mut s_out);
                let _ = s_out.shutdown(Shutdown::Write);
            });
            let (mut s_in, mut c_out) = (server, client);
            let flips = flips.clone();
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 64 * 1024];
                let mut offset = 0u64;
                loop {
                    let n = match s_in.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => n,
                    };
                    for (k, b) in buf[..n].iter_mut().enumerate() {
                        let at = offset + k as u64;
                        if at > 4096 && at % every == every / 2 {
                            *b ^= 0x40;
                            flips.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    offset += n as u64;
                    if c_out.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
                let _ = c_out.shutdown(Shutdown::Write);
            });
        }
    });
    addr
}

#[test]
fn corrupted_bytes_from_a_peer_are_never_admitted() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let nginx = Nginx::start();
    let data = random_bytes(96 * MIB, 11);
    let digest = sha256(&data);
    let url = nginx.put("weights.bin", &data);
    let flips = Arc::new(AtomicU64::new(0));
    let proxies: Mutex<HashMap<SocketAddr, SocketAddr>> = Mutex::new(HashMap::new());
    let cluster = Cluster::with_addrs(
        4,
        &["--stripe-size", "16MiB", "--store-budget", "1GiB"],
        |_, j, real| {
            if j != 1 {
                return real;
            }
            *proxies
                .lock()
                .unwrap()
                .entry(real)
                .or_insert_with(|| corrupting_proxy(real, 3 * MIB as u64, flips.clone()))
        },
    );
    let gets: Vec<_> = (0..4)
        .map(|i| cluster.spawn_get(i, &url, Some(&digest)))
        .collect();
    for (child, out) in gets {
        let (ok, err) = finish(child, &out);
        assert!(ok, "get failed: {err}");
        assert_eq!(file_sha256(&out), digest);
    }
    assert!(
        flips.load(Ordering::Relaxed) > 0,
        "the proxy corrupted nothing"
    );
    // Every stripe any agent admitted is the true stripe.
    let admitted = assert_admitted_true(&cluster, &data, STRIPE);
    assert!(admitted >= data.len().div_ceil(STRIPE));
}

#[test]
fn a_cut_link_is_routed_around_through_a_relay() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let nginx = Nginx::start();
    let (size, stripe) = (48 * MIB, MIB);
    let data = random_bytes(size, 9);
    let digest = sha256(&data);
    let url = nginx.put("cut.bin", &data);
    // n0 cannot reach n1 (nothing listens where n0 looks for it), while
    // the static membership says n1 is alive and everyone else reaches it.
    let nowhere = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let args = [
        "--stripe-size",
        "1MiB",
        "--store-budget",
        "1GiB",
        "--min-copies",
        "1",
    ];
    let cluster = Cluster::with_addrs(
        3,
        &args,
        |i, j, real| {
            if (i, j) == (0, 1) { nowhere } else { real }
        },
    );

    let stripes = warm_on_owners(&cluster, &url, &digest, size, stripe);
    assert_eq!(nginx.bytes_served("/cut.bin"), size as u64);
    let behind_the_cut = (0..stripes)
        .filter(|&i| successors_of(3, &digest, i, 1)[0] == 1)
        .count();
    assert!(behind_the_cut > 0, "n1 owns no stripe; pick another object");

    // n0's get: the stripes n1 holds reach it only through n2 (directly
    // as a hop of its path, or as a relay around the cut). Asking anyone
    // else would send the stand-in to the origin.
    let (child, out) = cluster.spawn_get(0, &url, Some(&digest));
    let (ok, err) = finish(child, &out);
    assert!(ok, "get failed: {err}\nagents:\n{}", cluster.problems());
    assert_eq!(file_sha256(&out), digest);
    assert_eq!(
        nginx.bytes_served("/cut.bin"),
        size as u64,
        "n1's {behind_the_cut} stripes must come around the cut, not from the origin again"
    );
}

#[test]
fn a_stored_copy_that_rotted_is_refused_and_removed() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let nginx = Nginx::start();
    let (size, stripe) = (24 * MIB, MIB);
    let data = random_bytes(size, 13);
    let digest = sha256(&data);
    let url = nginx.put("rot.bin", &data);
    let args = [
        "--stripe-size",
        "1MiB",
        "--store-budget",
        "1GiB",
        "--min-copies",
        "1",
    ];
    let cluster = Cluster::new(2, &args);
    warm_on_owners(&cluster, &url, &digest, size, stripe);
    // Flip one byte in every stripe n1 holds, in place, as a failing disk
    // would: the names still claim the old checksums.
    let rotted = cluster.agents[1].stripes();
    assert!(!rotted.is_empty(), "n1 owns no stripe; pick another object");
    for (path, _) in &rotted {
        let mut bytes = std::fs::read(path).unwrap();
        bytes[stripe / 2] ^= 0x01;
        std::fs::write(path, bytes).unwrap();
    }
    // n0 reads everything: n1's copies fail n0's whole-stripe check, n1
    // is told and removes them, and n0 gets the stripes again.
    let (child, out) = cluster.spawn_get(0, &url, Some(&digest));
    let (ok, err) = finish(child, &out);
    assert!(ok, "get failed: {err}\nagents:\n{}", cluster.problems());
    assert_eq!(file_sha256(&out), digest);
    // The rotten files are gone: whatever n1 holds now (it read its
    // stripes again from the origin) matches its checksum.
    assert_admitted_true(&cluster, &data, stripe);
}
