//! Gossip on an in-memory network under tokio's paused clock: joining by
//! roster, failure detection, graceful leave, restart, and a 200-node
//! cluster. Times here are virtual, so bounds are the protocol's, not
//! this machine's.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use shoal_membership::bootstrap::{self, MemoryRosters as Directory};
use shoal_membership::{Gossip, GossipConfig, MemberState, MemoryNet, Peer};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// Starts node `i` with `n0` as its seed, as an agent does.
fn boot(net: &MemoryNet, dir: &Directory, i: usize, generation: u64) -> Gossip {
    let g = start(net, i, generation);
    dir.insert(addr(i), g.clone());
    let cfg = GossipConfig::default();
    tokio::spawn(bootstrap::run(
        g.clone(),
        vec![addr(0).to_string()],
        Arc::new(dir.clone()),
        Duration::from_millis(cfg.retry_ms),
        Duration::from_millis(cfg.sync_ms),
        i as u64,
    ));
    g
}

fn addr(i: usize) -> SocketAddr {
    SocketAddr::from(([10, (i >> 16) as u8, (i >> 8) as u8, i as u8], 7420))
}

fn peer(i: usize, generation: u64) -> Peer {
    Peer {
        name: format!("n{i}"),
        data: addr(i),
        gossip: addr(i),
        labels: vec![format!("rack{}", i % 4)],
        generation,
    }
}

fn start(net: &MemoryNet, i: usize, generation: u64) -> Gossip {
    let cfg = GossipConfig::default();
    Gossip::spawn(
        peer(i, generation),
        &cfg,
        net.attach(addr(i)),
        i as u64 ^ generation,
    )
    .unwrap()
}

/// Joins `g` through `via` the way the agent does: fetch the roster, apply
/// it in one batch, announce.
async fn join(g: &Gossip, via: &Gossip) {
    let roster = via.snapshot().await.unwrap();
    g.join(roster, via.me().clone()).await.unwrap();
}

fn state_of(g: &Gossip, name: &str) -> Option<(MemberState, u64)> {
    let r = g.roster();
    r.members.get(name).map(|m| (m.state, m.peer.generation))
}

fn live(g: &Gossip) -> usize {
    g.roster().live().count()
}

/// Waits (virtual time) until `done` holds, up to `limit`; returns how long.
async fn until(limit: Duration, mut done: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if done() {
            return Some(start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    None
}

async fn cluster(net: &MemoryNet, n: usize) -> Vec<Gossip> {
    let dir = Directory::default();
    // Every node starts at once, as a DaemonSet's pods do.
    let nodes: Vec<Gossip> = (0..n).map(|i| boot(net, &dir, i, 1)).collect();
    let t = until(Duration::from_secs(60), || {
        nodes.iter().all(|g| live(g) == n)
    })
    .await;
    let counts: Vec<usize> = nodes.iter().map(live).collect();
    println!(
        "{n} nodes started at once converged in {t:?} (virtual); live seen min {:?} max {:?}",
        counts.iter().min(),
        counts.iter().max()
    );
    assert!(t.is_some(), "{n} nodes never converged");
    nodes
}

#[tokio::test(start_paused = true)]
async fn a_joining_node_sees_everyone_at_once_and_everyone_sees_it_soon() {
    let net = MemoryNet::new(Duration::from_micros(200));
    let nodes = cluster(&net, 8).await;
    let new = start(&net, 8, 1);
    join(&new, &nodes[3]).await;
    // The roster arrives in one batch: the new node knows all 9 at once.
    let seen = until(Duration::from_secs(1), || live(&new) == 9).await;
    assert!(seen.unwrap() < Duration::from_millis(50), "{seen:?}");
    let all = until(Duration::from_secs(10), || {
        nodes.iter().all(|g| live(g) == 9)
    })
    .await;
    assert!(all.is_some(), "the others never saw the new node");
}

#[tokio::test(start_paused = true)]
async fn a_killed_node_is_declared_down_everywhere_within_seconds() {
    let net = MemoryNet::new(Duration::from_micros(200));
    let nodes = cluster(&net, 8).await;
    net.detach(addr(5));
    let others: Vec<&Gossip> = nodes
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 5)
        .map(|(_, g)| g)
        .collect();
    let t = until(Duration::from_secs(20), || {
        others
            .iter()
            .all(|g| state_of(g, "n5").map(|s| s.0) == Some(MemberState::Down))
    })
    .await;
    // Suspicion alone lasts 1.5 s; probing and spreading the news add a
    // few probe periods.
    let t = t.expect("n5 never declared down everywhere");
    assert!(t < Duration::from_secs(6), "{t:?}");
}

#[tokio::test(start_paused = true)]
async fn a_node_that_leaves_is_dropped_within_a_second_and_its_successor_rejoins() {
    let net = MemoryNet::new(Duration::from_micros(200));
    let mut nodes = cluster(&net, 8).await;
    let leaving = nodes.remove(2);
    leaving.leave().await.unwrap();
    let t = until(Duration::from_secs(5), || {
        nodes
            .iter()
            .all(|g| state_of(g, "n2").map(|s| s.0) == Some(MemberState::Down))
    })
    .await;
    assert!(
        t.expect("leave never spread") <= Duration::from_secs(1),
        "{t:?}"
    );
    assert!(
        leaving.snapshot().await.is_err(),
        "gossip kept running after leave"
    );

    // The same name restarts with a newer generation and replaces its old
    // self everywhere.
    net.detach(addr(2));
    let again = start(&net, 2, 2);
    join(&again, &nodes[0]).await;
    let back = until(Duration::from_secs(10), || {
        nodes
            .iter()
            .all(|g| state_of(g, "n2") == Some((MemberState::Alive, 2)))
    })
    .await;
    assert!(
        back.is_some(),
        "the restarted node never came back everywhere"
    );
    assert_eq!(live(&again), 8);
}

#[tokio::test(start_paused = true)]
async fn two_hundred_nodes_converge_and_detect_a_failure() {
    let n = 200;
    let net = MemoryNet::new(Duration::from_micros(200));
    let nodes = cluster(&net, n).await;
    net.detach(addr(77));
    let t = until(Duration::from_secs(30), || {
        nodes
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != 77)
            .all(|(_, g)| state_of(g, "n77").map(|s| s.0) == Some(MemberState::Down))
    })
    .await;
    println!("n77 declared down by all 199 after {t:?} (virtual)");
    assert!(t.is_some(), "n77 never declared down by all 199");
}
