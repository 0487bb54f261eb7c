//! Gossip membership with real agents on loopback: every node learns of
//! a killed peer within the detection bound, of a peer that leaves at
//! once, and takes back a restarted one.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use common::*;
use shoal_agent::status::Status;
use shoal_membership::MemberState;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Mutex;
use std::time::{Duration, Instant};

static SERIAL: Mutex<()> = Mutex::new(());

/// The agent's status, or `None` if it does not answer.
fn status(a: &Agent) -> Option<Status> {
    let mut s = TcpStream::connect(("127.0.0.1", a.api)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.write_all(b"GET /v1/status HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).ok()?;
    let text = String::from_utf8_lossy(&raw);
    let (_, body) = text.split_once("\r\n\r\n")?;
    serde_json::from_str(body).ok()
}

/// `name`'s state and generation as `a` sees it.
fn seen(a: &Agent, name: &str) -> Option<(MemberState, u64)> {
    let s = status(a)?;
    s.members
        .iter()
        .find(|m| m.name == name)
        .map(|m| (m.state, m.generation))
}

fn alive_count(a: &Agent) -> usize {
    status(a).map_or(0, |s| {
        s.members
            .iter()
            .filter(|m| m.state == MemberState::Alive)
            .count()
    })
}

fn converge(cluster: &Cluster, n: usize) {
    let ok = eventually(Duration::from_secs(30), || {
        cluster.agents.iter().all(|a| alive_count(a) == n)
    });
    assert!(
        ok,
        "the agents never all saw {n} members:\n{}",
        cluster.problems()
    );
}

/// Polls every agent but `gone` until each sees `gone` down; returns the
/// time each took, from `since`.
fn drop_times(cluster: &Cluster, gone: usize, since: Instant, limit: Duration) -> Vec<Duration> {
    let name = format!("n{gone}");
    let mut times = vec![None; cluster.agents.len()];
    times[gone] = Some(Duration::ZERO);
    while since.elapsed() < limit && times.iter().any(Option::is_none) {
        for (i, a) in cluster.agents.iter().enumerate() {
            if times[i].is_none() && seen(a, &name).map(|s| s.0) == Some(MemberState::Down) {
                times[i] = Some(since.elapsed());
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let missing: Vec<usize> = (0..times.len()).filter(|i| times[*i].is_none()).collect();
    assert!(
        missing.is_empty(),
        "agents {missing:?} never dropped {name}"
    );
    let mut t: Vec<Duration> = times
        .into_iter()
        .flatten()
        .enumerate()
        .filter(|(i, _)| *i != gone)
        .map(|(_, d)| d)
        .collect();
    t.sort();
    t
}

fn ms(v: &[Duration]) -> Vec<u128> {
    v.iter().map(Duration::as_millis).collect()
}

#[test]
fn eight_agents_declare_a_killed_peer_down_within_the_detection_bound() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let mut cluster = Cluster::gossiping(8, &[]);
    converge(&cluster, 8);
    let since = Instant::now();
    cluster.agents[5].kill();
    // Defaults: probes every 0.5 s, 1.5 s of suspicion; the bound allows
    // for a loaded machine, the figures are printed.
    let t = drop_times(&cluster, 5, since, Duration::from_secs(15));
    println!("kill -9 of n5: detection times (ms) per agent {:?}", ms(&t));
    // Nothing else was lost along the way.
    for (i, a) in cluster.agents.iter().enumerate().filter(|(i, _)| *i != 5) {
        assert_eq!(alive_count(a), 7, "n{i} lost more than n5");
    }
}

#[test]
fn a_leaving_agent_is_dropped_at_once_and_a_restarted_one_returns() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    // Suspicion lasts 30 s here, so a drop sooner than that can only come
    // from the leave the agent announced.
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("slow.toml");
    std::fs::write(&cfg, "[gossip]\nsuspect_ms = 30000\n").unwrap();
    let cfg = cfg.display().to_string();
    let mut cluster = Cluster::gossiping(8, &["--config", &cfg]);
    converge(&cluster, 8);
    let before = seen(&cluster.agents[0], "n6").unwrap().1;

    let since = Instant::now();
    cluster.agents[6].stop();
    let t = drop_times(&cluster, 6, since, Duration::from_secs(10));
    println!("SIGTERM of n6: dropped after (ms) {:?}", ms(&t));

    // The same name comes back as a newer generation, alive everywhere.
    cluster.agents[6].start();
    let back = eventually(Duration::from_secs(20), || {
        cluster
            .agents
            .iter()
            .all(|a| seen(a, "n6").is_some_and(|(s, g)| s == MemberState::Alive && g > before))
    });
    assert!(
        back,
        "n6 did not come back everywhere:\n{}",
        cluster.problems()
    );
    converge(&cluster, 8);
}
