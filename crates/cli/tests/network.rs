//! Membership and the data plane where links differ, on hosts in network
//! namespaces (see `common::netns`): a link cut by a firewall while both
//! ends reach everyone else, and nodes that vanish as in a scale-down.
//! These tests need root; `scripts/test` runs them as root and makes a
//! missing namespace a failure, elsewhere they skip.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use common::netns::{self, Lan};
use common::*;
use shoal_membership::MemberState;
use std::sync::Mutex;
use std::time::{Duration, Instant};

static SERIAL: Mutex<()> = Mutex::new(());
const MIB: usize = 1 << 20;

/// Members `a` sees in any state but alive, by name.
fn not_alive(a: &Agent) -> Vec<String> {
    a.status().map_or(vec!["(no status)".into()], |s| {
        s.members
            .into_iter()
            .filter(|m| m.state != MemberState::Alive)
            .map(|m| format!("{} {:?}", m.name, m.state))
            .collect()
    })
}

/// Failed attempts an agent made on peers, all kinds.
fn peer_failures(a: &Agent) -> f64 {
    a.metric("shoal_peer_failures_total")
}

#[test]
fn a_blocked_link_is_neither_a_failure_nor_a_lost_get() {
    if !netns::available() {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let lan = Lan::new(4);
    let nginx = Nginx::start_with(lan.test_ip(), "");
    let (size, stripe) = (48 * MIB, MIB);
    let data = random_bytes(size, 31);
    let digest = sha256(&data);
    let url = nginx.put("cut.bin", &data);
    let args = ["--stripe-size", "1MiB", "--min-copies", "1"];
    let cluster = lan.cluster(4, &args);
    converge(&cluster, 4);
    warm_on_owners(&cluster, &url, &digest, size, stripe);

    // n0 and n1 cannot exchange a single packet; both reach n2 and n3.
    lan.block(0, 1);
    let (n0, n1, n2) = (
        cluster.agents[0].peer_addr(),
        cluster.agents[1].peer_addr(),
        cluster.agents[2].peer_addr(),
    );
    assert!(
        !lan.can_connect(0, n1) && !lan.can_connect(1, n0),
        "the block leaks"
    );
    assert!(
        lan.can_connect(0, n2) && lan.can_connect(1, n2),
        "the block cuts too much"
    );
    let blocked = Instant::now();

    // Each end reads the whole object: the stripes only the other end
    // holds must come around the cut.
    let gets: Vec<_> = [0, 1]
        .iter()
        .map(|&i| cluster.spawn_get(i, &url, Some(&digest)))
        .collect();
    // Nobody is suspected or declared down meanwhile, nor for several
    // suspicion periods (1.5 s each) after the block.
    let mut watched = 0;
    while blocked.elapsed() < Duration::from_secs(10) || watched == 0 {
        for a in &cluster.agents {
            let bad = not_alive(a);
            assert!(
                bad.is_empty(),
                "{} sees {bad:?} although only the n0-n1 link is cut:\n{}",
                a.name,
                cluster.problems()
            );
        }
        watched += 1;
        std::thread::sleep(Duration::from_millis(100));
    }
    for (child, out) in gets {
        let (ok, err) = finish(child, &out);
        assert!(ok, "get failed: {err}\nagents:\n{}", cluster.problems());
        assert_eq!(file_sha256(&out), digest);
    }
    assert_eq!(
        nginx.bytes_served("/cut.bin"),
        size as u64,
        "stripes came from the origin again instead of around the cut"
    );
    let tried = (
        peer_failures(&cluster.agents[0]),
        peer_failures(&cluster.agents[1]),
    );
    assert!(
        tried.0 > 0.0 && tried.1 > 0.0,
        "no get tried the cut link ({tried:?} failed attempts); pick another object"
    );
    println!(
        "cut n0-n1: {watched} status rounds over {:?}, nobody suspected; failed attempts on the cut {tried:?}",
        blocked.elapsed()
    );
}

/// Starts a fresh agent `n{i}` on host `i`, waits until it holds the
/// roster, then times its get of `url`; returns (time, failed peer
/// attempts). The agent joins `cluster`.
fn join_and_get(
    lan: &Lan,
    cluster: &mut Cluster,
    i: usize,
    args: &[&str],
    url: &str,
    digest: &str,
) -> (Duration, f64) {
    let mut agent = lan.agent(&cluster.dir, i, args);
    agent.start();
    let known = eventually(Duration::from_secs(20), || {
        agent.status().is_some_and(|s| s.members.len() > i)
    });
    assert!(known, "n{i} never got the roster:\n{}", agent.log());
    cluster.agents.push(agent);
    let start = Instant::now();
    let (child, out) = cluster.spawn_get(i, url, Some(digest));
    let (ok, err) = finish(child, &out);
    let took = start.elapsed();
    assert!(
        ok,
        "n{i}'s get failed: {err}\nagents:\n{}",
        cluster.problems()
    );
    assert_eq!(file_sha256(&out), digest);
    (took, peer_failures(&cluster.agents[i]))
}

#[test]
fn scale_down_costs_a_connect_timeout_per_dead_peer_at_most_and_nothing_once_known() {
    if !netns::available() {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let lan = Lan::new(11);
    let nginx = Nginx::start_with(lan.test_ip(), "");
    let size = 64 * MIB;
    let data = random_bytes(size, 41);
    let digest = sha256(&data);
    let url = nginx.put("image-layer.bin", &data);
    let args = ["--stripe-size", "4MiB", "--store-budget", "1GiB"];
    let mut cluster = lan.cluster(8, &args);
    converge(&cluster, 8);

    // Every node pulls the object at once and keeps it.
    let gets: Vec<_> = (0..8)
        .map(|i| cluster.spawn_get(i, &url, Some(&digest)))
        .collect();
    for (child, out) in gets {
        let (ok, err) = finish(child, &out);
        assert!(ok, "warm-up get failed: {err}\n{}", cluster.problems());
    }
    let origin = nginx.bytes_served("/image-layer.bin");

    let (base, base_failed) = join_and_get(&lan, &mut cluster, 8, &args, &url, &digest);

    // Three nodes vanish, as when the autoscaler deletes their VMs:
    // the process dies and packets to the host go unanswered. Two are in
    // the joiners' rack (odd hosts), where their nearest peers are.
    let dead = [3, 5, 6];
    for &v in &dead {
        cluster.agents[v].kill();
        lan.unplug(v);
    }
    let since = Instant::now();
    let (now, now_failed) = join_and_get(&lan, &mut cluster, 9, &args, &url, &digest);
    let now_done = since.elapsed();

    let detection = drop_times(&cluster, &dead, since, Duration::from_secs(30));
    let (after, after_failed) = join_and_get(&lan, &mut cluster, 10, &args, &url, &digest);
    assert_eq!(
        after_failed,
        0.0,
        "a node that joined after the dead were known still tried them:\n{}",
        cluster.problems()
    );
    assert_eq!(
        nginx.bytes_served("/image-layer.bin"),
        origin,
        "the fresh nodes went to the origin although live peers held everything"
    );
    println!(
        "scale-down of 3 of 8: warm-up took {origin} origin bytes for {size}; \
         fresh get before the kill {base:?} ({base_failed} failed attempts), \
         right after it {now:?} ({now_failed} failed attempts, done {now_done:?} after the kill), \
         after detection {after:?} (0 failed attempts); \
         survivors declared all 3 down after (ms) {:?}",
        detection
            .iter()
            .map(Duration::as_millis)
            .collect::<Vec<_>>()
    );
}
