//! Gossip at scale on the in-memory network under a paused clock (times
//! are virtual; the network delivers every packet after 200 µs).
//!
//! `cargo run --release -p shoal-membership --example join_at_scale [N]`
//! (default 1000) prints: how long N nodes started at once take to
//! converge; how long a node joining later takes to see every member, and
//! until every member sees it; how long until every node has declared a
//! killed node down; how long a graceful leave takes to reach everyone.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use shoal_membership::bootstrap::{self, MemoryRosters};
use shoal_membership::{Gossip, GossipConfig, MemberState, MemoryNet, Peer};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

fn addr(i: usize) -> SocketAddr {
    SocketAddr::from(([10, (i >> 16) as u8, (i >> 8) as u8, i as u8], 7420))
}

fn boot(net: &MemoryNet, rosters: &MemoryRosters, i: usize) -> Gossip {
    let cfg = GossipConfig::default();
    let me = Peer {
        name: format!("n{i}"),
        data: addr(i),
        gossip: addr(i),
        labels: vec![format!("row{}", i / 512), format!("rack{}", i / 32)],
        generation: 1,
    };
    let g = Gossip::spawn(me, &cfg, net.attach(addr(i)), i as u64).unwrap();
    rosters.insert(addr(i), g.clone());
    tokio::spawn(bootstrap::run(
        g.clone(),
        vec![addr(0).to_string()],
        Arc::new(rosters.clone()),
        Duration::from_millis(cfg.retry_ms),
        Duration::from_millis(cfg.sync_ms),
        i as u64,
    ));
    g
}

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

fn live(g: &Gossip) -> usize {
    g.roster().live().count()
}

fn state(g: &Gossip, name: &str) -> Option<MemberState> {
    g.roster().members.get(name).map(|r| r.state)
}

fn show(what: &str, t: Option<Duration>) {
    match t {
        Some(t) => println!("| {what} | {:.2} s |", t.as_secs_f64()),
        None => println!("| {what} | not within the limit |"),
    }
}

async fn run(n: usize) {
    let net = MemoryNet::new(Duration::from_micros(200));
    let rosters = MemoryRosters::default();
    let limit = Duration::from_secs(120);
    let mut nodes: Vec<Gossip> = (0..n).map(|i| boot(&net, &rosters, i)).collect();
    println!("| {n} nodes, virtual time | |\n| --- | ---: |");
    let t = until(limit, || nodes.iter().all(|g| live(g) == n)).await;
    show(&format!("{n} nodes started at once: all see all"), t);

    let new = boot(&net, &rosters, n);
    let start = Instant::now();
    let t = until(limit, || live(&new) == n + 1).await;
    show("a joining node sees every member", t);
    let t = until(limit, || nodes.iter().all(|g| live(g) == n + 1)).await;
    show(
        "every member sees the joining node",
        t.map(|_| start.elapsed()),
    );
    nodes.push(new);

    let victim = n / 2;
    net.detach(addr(victim));
    rosters.remove(addr(victim));
    let name = format!("n{victim}");
    let others = |skip: usize| {
        let v: Vec<Gossip> = nodes
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != skip)
            .map(|(_, g)| g.clone())
            .collect();
        v
    };
    let rest = others(victim);
    let start = Instant::now();
    let mut firsts = vec![None; rest.len()];
    let t = until(limit, || {
        for (i, g) in rest.iter().enumerate() {
            if firsts[i].is_none() && state(g, &name) == Some(MemberState::Down) {
                firsts[i] = Some(start.elapsed());
            }
        }
        firsts.iter().all(Option::is_some)
    })
    .await;
    let mut d: Vec<Duration> = firsts.into_iter().flatten().collect();
    d.sort();
    if let (Some(first), Some(median)) = (d.first(), d.get(d.len() / 2)) {
        println!(
            "| killed node: first to declare it down / median | {:.2} s / {:.2} s |",
            first.as_secs_f64(),
            median.as_secs_f64()
        );
    }
    show("killed node: all declare it down", t);

    let leaver = n / 3;
    let rest = others(leaver);
    let name = format!("n{leaver}");
    let start = Instant::now();
    nodes[leaver].leave().await.unwrap();
    let t = until(limit, || {
        rest.iter()
            .filter(|g| g.me().name != format!("n{victim}"))
            .all(|g| state(g, &name) == Some(MemberState::Down))
    })
    .await;
    show("graceful leave: all drop it", t.map(|_| start.elapsed()));
    println!("\npackets sent in all: {}", net.packets());
}

fn main() {
    let n = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1000usize);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap();
    rt.block_on(run(n));
}
