//! The data path's logic with agents in this process (see `common`):
//! single flight across the mesh, the replication floor, corrupt bytes
//! from a peer, a cut link routed around through a relay, a rotten stored
//! copy, and a store smaller than the object. Moved here from the
//! process-level tests, which keep what needs real processes (kill -9,
//! SIGSTOP, restarts, network namespaces).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use common::*;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

const KIB: usize = 1 << 10;
const MIB: usize = 1 << 20;

/// Reads the object on each listed agent at once; each read must return
/// `data`.
async fn read_on(c: &Cluster, who: &[usize], url: &str, data: &[u8]) {
    let digest = sha256(data);
    let reads: Vec<_> = who
        .iter()
        .map(|&i| {
            let (api, url, digest) = (c.agents[i].api, url.to_owned(), digest.clone());
            tokio::spawn(async move { read(api, &url, Some(&digest)).await })
        })
        .collect();
    for (r, i) in reads.into_iter().zip(who) {
        let got = r.await.unwrap().unwrap_or_else(|e| panic!("n{i}: {e}"));
        assert!(got == data, "n{i} read the object");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_agents_pull_each_byte_from_the_origin_once() {
    let data = random_bytes(24 * MIB + 5 * KIB, 1);
    let (url, origin) = origin(data.clone()).await;
    let c = cluster(5, MIB as u64, |_| {}).await;
    read_on(&c, &[0, 1, 2, 3, 4], &url, &data).await;
    origin.assert_served_once();
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stripe_fetched_from_the_origin_is_replicated_to_the_first_successor() {
    let data = random_bytes(64 * 256 * KIB, 5);
    let (url, origin) = origin(data.clone()).await;
    let c = cluster(5, 256 * KIB as u64, |_| {}).await;
    read_on(&c, &[0], &url, &data).await;
    let spec = spec(&url, &data);
    // The stripes n0 owns: its path for them is empty, so n0 alone read
    // them from the origin and nobody else saw them, except by the push.
    let mut checked = 0;
    for i in 0..c.stripes(&spec) {
        let succ = c.successors(&spec, i, 2);
        if succ[0] != 0 {
            continue;
        }
        // The push is asynchronous: wait for it (bounded), then check.
        for _ in 0..600 {
            if c.holders(&spec, i).contains(&succ[1]) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let mut want = vec![0, succ[1]];
        want.sort();
        assert_eq!(
            c.holders(&spec, i),
            want,
            "stripe {i}: owner n0 and first successor n{} should hold it, and nobody else",
            succ[1]
        );
        checked += 1;
    }
    assert!(checked >= 5, "only {checked} stripes owned by n0");
    origin.assert_served_once();
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupted_bytes_from_a_peer_are_never_admitted() {
    let data = random_bytes(16 * MIB, 11);
    let (url, _origin) = origin(data.clone()).await;
    let flips = Arc::new(AtomicU64::new(0));
    // Everyone reaches n1 through a proxy that flips a byte every 768 KiB.
    let mut proxies = std::collections::HashMap::new();
    let n1 = SocketAddr::from(([127, 0, 0, 1], free_port()));
    proxies.insert(
        n1,
        corrupting_proxy(n1, 768 * KIB as u64, flips.clone()).await,
    );
    let c = cluster_with(
        4,
        MIB as u64,
        |cfg| {
            if cfg.name == "n1" {
                cfg.listen = n1;
            }
        },
        |_, j, real| if j == 1 { proxies[&n1] } else { real },
    )
    .await;
    read_on(&c, &[0, 1, 2, 3], &url, &data).await;
    assert!(
        flips.load(Ordering::Relaxed) > 0,
        "the proxy corrupted nothing"
    );
    // Every stripe any agent admitted is the true stripe.
    let admitted = c.assert_admitted_true(&data);
    assert!(admitted >= 16, "{admitted} stripes admitted");
    c.stop().await;
}

/// Three agents, 256 KiB stripes, one copy per stripe, where n0 cannot
/// reach n1 (nothing listens where n0 looks for it) while the static
/// membership says n1 is alive and everyone else reaches it. Returns the
/// cluster and how many stripes of `spec` n1 owns (at least one).
async fn cut_between_n0_and_n1(spec: &shoal_agent::proto::ObjectSpec) -> (Cluster, usize) {
    let nowhere = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let c = cluster_with(
        3,
        256 * KIB as u64,
        |cfg| cfg.min_copies = 1,
        |i, j, real| if (i, j) == (0, 1) { nowhere } else { real },
    )
    .await;
    let behind_the_cut = (0..c.stripes(spec))
        .filter(|&i| c.successors(spec, i, 1)[0] == 1)
        .count();
    assert!(behind_the_cut > 0, "n1 owns no stripe; pick another object");
    (c, behind_the_cut)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_link_is_routed_around_through_a_relay() {
    let data = random_bytes(48 * 256 * KIB, 9);
    let (url, origin) = origin(data.clone()).await;
    let spec = spec(&url, &data);
    let (c, behind_the_cut) = cut_between_n0_and_n1(&spec).await;
    c.warm_on_owners(&spec).await;
    let sent = origin.sent.load(Ordering::SeqCst);
    assert_eq!(sent, data.len() as u64);
    // n0's read: the stripes n1 holds reach it only through n2 (directly
    // as a hop of its path, or as a relay around the cut). Asking anyone
    // else would send the stand-in to the origin.
    read_on(&c, &[0], &url, &data).await;
    assert_eq!(
        origin.sent.load(Ordering::SeqCst),
        sent,
        "n1's {behind_the_cut} stripes must come around the cut, not from the origin again"
    );
    c.stop().await;
}

/// The same cut, but nothing is warm and the origin is slow, so the
/// owner's fetches are still in flight when n0's relays through n2 reach
/// it (or start them): the relayed requests join the owner's flights, and
/// the origin sends each byte once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_around_a_cut_link_joins_the_owners_fetch_in_flight() {
    let data = random_bytes(48 * 256 * KIB, 17);
    let (url, origin) = origin(data.clone()).await;
    origin.delay_ms.store(300, Ordering::SeqCst);
    let (c, _) = cut_between_n0_and_n1(&spec(&url, &data)).await;
    read_on(&c, &[0, 2], &url, &data).await;
    origin.assert_served_once();
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stored_copy_that_rotted_is_refused_and_removed() {
    let stripe = 256 * KIB;
    let data = random_bytes(24 * stripe, 13);
    let (url, _origin) = origin(data.clone()).await;
    let c = cluster(2, stripe as u64, |cfg| cfg.min_copies = 1).await;
    c.warm_on_owners(&spec(&url, &data)).await;
    // Flip one byte in every stripe n1 holds, in place, as a failing disk
    // would: the names still claim the old checksums.
    let rotted = stripe_files(&c.data_dir(1));
    assert!(!rotted.is_empty(), "n1 owns no stripe; pick another object");
    for (path, _) in &rotted {
        let mut bytes = std::fs::read(path).unwrap();
        bytes[stripe / 2] ^= 0x01;
        std::fs::write(path, bytes).unwrap();
    }
    // n0 reads everything: n1's copies fail n0's whole-stripe check, n1
    // is told and removes them, and n0 gets the stripes again. Bytes of
    // a rotten stripe may already have reached the client when the check
    // fails, so its stream breaks and it starts over, as `shoal get`
    // does (up to three attempts).
    let digest = sha256(&data);
    let (mut attempts, mut whole) = (Vec::new(), false);
    for _ in 0..3 {
        let got = read(c.agents[0].api, &url, Some(&digest)).await;
        whole = got.as_ref().is_ok_and(|b| *b == data);
        attempts.push(got.map(|b| b.len()));
        if whole {
            break;
        }
    }
    assert!(whole, "n0 read the object: {attempts:?}");
    // The rotten files are gone: whatever n1 holds now matches its
    // checksum.
    c.assert_admitted_true(&data);
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_smaller_than_the_object_stays_within_its_budget() {
    let data = random_bytes(12 * MIB, 5);
    let (url, _origin) = origin(data.clone()).await;
    let budget = 5 * MIB as u64;
    let c = cluster(1, 512 * KIB as u64, |cfg| {
        cfg.store_budget = shoal_store::Budget::Bytes(budget);
    })
    .await;
    let (peak, done) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicBool::new(false)),
    );
    let watcher = {
        let (peak, done, dir) = (peak.clone(), done.clone(), c.data_dir(0));
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                peak.fetch_max(dir_bytes(&dir), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(2));
            }
        })
    };
    read_on(&c, &[0], &url, &data).await;
    done.store(true, Ordering::Relaxed);
    watcher.join().unwrap();
    let peak = peak.load(Ordering::Relaxed);
    assert!(peak > 0, "nothing was cached");
    assert!(
        peak <= budget,
        "store reached {peak} bytes, budget {budget}"
    );
    assert!(dir_bytes(&c.data_dir(0)) <= budget);
    c.stop().await;
}
