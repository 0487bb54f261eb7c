//! End to end: real agents on loopback, nginx as the origin, `shoal get`
//! as the client.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use common::*;
use std::sync::Mutex;

/// The end-to-end tests each use most of the machine; run one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

const MIB: usize = 1 << 20;

/// Checks nginx served every byte of `uri` exactly once: GET ranges that
/// are disjoint and cover the object.
fn assert_served_once(nginx: &Nginx, uri: &str, size: u64) {
    let mut ranges: Vec<(u64, u64)> = nginx
        .log()
        .iter()
        .filter(|r| r.0 == "GET" && r.1 == uri)
        .map(|r| {
            let spec = r.2.strip_prefix("bytes=").expect("ranged GETs only");
            let (a, b) = spec.split_once('-').unwrap();
            let a: u64 = a.parse().unwrap();
            let b: u64 = b.parse().unwrap();
            assert_eq!(r.4, b - a + 1, "short body for {spec}");
            (a, b + 1)
        })
        .collect();
    ranges.sort();
    let mut at = 0;
    for (a, b) in &ranges {
        assert_eq!(*a, at, "gap or overlap at byte {at}: {ranges:?}");
        at = *b;
    }
    assert_eq!(at, size);
    assert_eq!(
        nginx.bytes_served(uri),
        size,
        "origin amplification must be 1.00"
    );
}

#[test]
fn five_agents_pull_each_byte_from_the_origin_once() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let nginx = Nginx::start();
    let data = random_bytes(200 * MIB, 1);
    let digest = sha256(&data);
    let url = nginx.put("blob.bin", &data);
    let cluster = Cluster::new(5, &["--stripe-size", "16MiB", "--store-budget", "1GiB"]);
    let gets: Vec<_> = (0..5).map(|i| cluster.spawn_get(i, &url, None)).collect();
    for (child, out) in gets {
        let (ok, err) = finish(child, &out);
        assert!(ok, "get failed: {err}");
        assert_eq!(file_sha256(&out), digest);
    }
    assert_served_once(&nginx, "/blob.bin", data.len() as u64);
}

#[test]
fn a_stripe_fetched_from_the_origin_is_replicated_to_the_first_successor() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let nginx = Nginx::start();
    let (size, stripe) = (64 * MIB, MIB);
    let data = random_bytes(size, 5);
    let digest = sha256(&data);
    let url = nginx.put("replicated.bin", &data);
    let cluster = Cluster::new(5, &["--stripe-size", "1MiB", "--store-budget", "1GiB"]);
    let (child, out) = cluster.spawn_get(0, &url, Some(&digest));
    let (ok, err) = finish(child, &out);
    assert!(ok, "get failed: {err}");

    // The stripes n0 owns: its path for them is empty, so n0 alone read
    // them from the origin and nobody else saw them, except by the push.
    let mut checked = 0;
    for i in 0..(size / stripe) as u64 {
        let succ = successors_of(5, &digest, i, 2);
        if succ[0] != 0 {
            continue;
        }
        let (key_hex, s1) = (stripe_key_hex(&digest, stripe as u64, i), succ[1]);
        // The push is asynchronous: wait for it (bounded), then check.
        eventually(std::time::Duration::from_secs(60), || {
            cluster.holders(&key_hex).contains(&s1)
        });
        let mut want = vec![0, s1];
        want.sort();
        assert_eq!(
            cluster.holders(&key_hex),
            want,
            "stripe {i}: owner n0 and first successor n{s1} should hold it, and nobody else"
        );
        checked += 1;
    }
    assert!(checked >= 5, "only {checked} stripes owned by n0");
    assert_eq!(nginx.bytes_served("/replicated.bin"), size as u64);
}
