//! Gossip membership with real agents on loopback: every node learns of
//! a killed peer within the detection bound, and of a peer that leaves at
//! once; the leaving peer finishes the transfer it was serving first; a
//! restarted one is taken back and owns its stripes again; gossip not
//! sealed with the cluster token's key is ignored.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use common::*;
use nix::sys::signal::Signal;
use shoal_membership::MemberState;
use std::sync::Mutex;
use std::time::{Duration, Instant};

static SERIAL: Mutex<()> = Mutex::new(());
const MIB: usize = 1 << 20;

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
    let t = drop_times(&cluster, &[5], since, Duration::from_secs(15));
    println!("kill -9 of n5: detection times (ms) per agent {:?}", ms(&t));
    // Nothing else was lost along the way.
    for (i, a) in cluster.agents.iter().enumerate().filter(|(i, _)| *i != 5) {
        assert_eq!(alive_count(a), 7, "n{i} lost more than n5");
    }
}

/// Bytes a `shoal get` writing to `out` has written so far.
fn written(out: &std::path::Path) -> u64 {
    std::fs::metadata(out.with_extension("shoal-part")).map_or(0, |m| m.len())
}

#[test]
fn a_leaving_agent_is_dropped_at_once_finishes_its_transfers_and_returns_as_owner() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    // Suspicion lasts 30 s here, so a drop sooner than that can only come
    // from the leave the agent announced.
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("slow.toml");
    std::fs::write(&cfg, "[gossip]\nsuspect_ms = 30000\n").unwrap();
    let cfg = cfg.display().to_string();
    // The origin sends at 2 MB/s per connection, so a get is still
    // moving bytes when its agent is told to stop.
    let nginx = Nginx::start_with(LOOPBACK, "limit_rate 2m;");
    let data = random_bytes(16 * MIB, 21);
    let digest = sha256(&data);
    let url = nginx.put("slow.bin", &data);
    let args = [
        "--config",
        &cfg,
        "--stripe-size",
        "1MiB",
        "--min-copies",
        "1",
    ];
    let mut cluster = Cluster::gossiping(8, &args);
    converge(&cluster, 8);
    let before = seen(&cluster.agents[0], "n6").unwrap().1;

    let (get, out) = cluster.spawn_get(6, &url, Some(&digest));
    assert!(
        eventually(Duration::from_secs(60), || written(&out) > 0),
        "the get through n6 never started"
    );
    let since = Instant::now();
    cluster.agents[6].signal(Signal::SIGTERM);
    let at_signal = written(&out);
    assert!(
        at_signal < data.len() as u64,
        "the get was done before n6 was stopped; slow the origin down"
    );
    let t = drop_times(&cluster, &[6], since, Duration::from_secs(10));
    println!("SIGTERM of n6: dropped after (ms) {:?}", ms(&t));

    // The get n6 was serving completes through n6 itself, and only then
    // does n6 exit, cleanly.
    let (ok, err) = finish(get, &out);
    assert!(
        ok,
        "n6's in-flight get failed: {err}\n{}",
        cluster.agents[6].log()
    );
    assert_eq!(file_sha256(&out), digest);
    println!(
        "n6 finished its transfer ({at_signal} of {} bytes written at SIGTERM) {:?} after the signal",
        data.len(),
        since.elapsed()
    );
    let exit = cluster.agents[6].wait_exit(Duration::from_secs(20));
    assert!(
        exit.is_some_and(|s| s.success()),
        "n6 did not exit cleanly after draining: {exit:?}"
    );

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

    // And it owns again: a cold get elsewhere puts every stripe n6 owns
    // on n6.
    let fresh = random_bytes(16 * MIB, 22);
    let fresh_digest = sha256(&fresh);
    let fresh_url = nginx.put("fresh.bin", &fresh);
    let (get, out) = cluster.spawn_get(0, &fresh_url, Some(&fresh_digest));
    let (ok, err) = finish(get, &out);
    assert!(ok, "get after the restart failed: {err}");
    assert_eq!(file_sha256(&out), fresh_digest);
    let owned: Vec<u64> = (0..16)
        .filter(|&i| successors_of(8, &fresh_digest, i, 1)[0] == 6)
        .collect();
    assert!(!owned.is_empty(), "n6 owns no stripe; pick another object");
    for i in owned {
        let key = stripe_key_hex(&fresh_digest, MIB as u64, i);
        assert!(
            cluster.holders(&key).contains(&6),
            "stripe {i} is owned by n6 but n6 does not hold it: {:?}",
            cluster.holders(&key)
        );
    }
}

/// Gossip packets are sealed with a key derived from the cluster token.
/// A gossip node without it (an in-process gossip task on plain UDP)
/// announces itself to n0 as a joining member would, and is never taken
/// in by anyone.
#[test]
fn gossip_without_the_cluster_key_is_ignored() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let cluster = Cluster::gossiping(3, &[]);
    converge(&cluster, 3);
    let status = cluster.agents[0].status().unwrap();
    let n0 = status.members.iter().find(|m| m.name == "n0").unwrap();
    let via = shoal_membership::Peer {
        name: n0.name.clone(),
        data: n0.addr,
        gossip: n0.addr,
        labels: n0.labels.clone(),
        generation: n0.generation,
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], free_port()));
        let transport = shoal_membership::transport::udp(addr, 1400, None)
            .await
            .unwrap();
        let me = shoal_membership::Peer {
            name: "outsider".into(),
            data: addr,
            gossip: addr,
            labels: Vec::new(),
            generation: 1,
        };
        let config = shoal_membership::GossipConfig::default();
        let g = shoal_membership::Gossip::spawn(me, &config, transport, 7).unwrap();
        g.join(Vec::new(), via).await.unwrap();
        tokio::time::sleep(Duration::from_secs(4)).await;
    });
    for a in &cluster.agents {
        let names: Vec<String> = a
            .status()
            .unwrap()
            .members
            .into_iter()
            .map(|m| m.name)
            .collect();
        assert!(
            !names.iter().any(|n| n == "outsider"),
            "{}: {names:?}",
            a.name
        );
    }
}
