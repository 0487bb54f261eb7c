//! The in-process harness itself (`shoal_agent::start`): ports, stopping,
//! single flight across agents, and draining. The data path's other
//! logic is in `data_path.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use common::*;
use shoal_agent::AgentConfig;
use shoal_agent::endpoints::replicate::{self, ReplicateHint};
use shoal_agent::proto::Wire;
use std::sync::atomic::Ordering;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_reads_on_every_node_fetch_each_byte_from_the_origin_once() {
    let bytes = random_bytes((3 << 20) + 12345, 3);
    let (url, origin) = origin(bytes.clone()).await;
    let c = cluster(3, 1 << 20, |_| {}).await;
    // Four readers on each node, all at once, cold, without a digest.
    let reads: Vec<_> = c
        .agents
        .iter()
        .flat_map(|a| std::iter::repeat_n(a.api, 4))
        .map(|api| {
            let url = url.clone();
            tokio::spawn(async move { read(api, &url, None).await })
        })
        .collect();
    for r in reads {
        assert!(
            r.await.unwrap().unwrap() == bytes,
            "every reader gets the object"
        );
    }
    // The stripes came from the origin once (HEADs send no body).
    origin.assert_served_once();
    // Stopping waits for flights and replication: none outlives it.
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_started_on_port_zero_advertises_the_port_it_got() {
    let dir = tempfile::tempdir().unwrap();
    let c = AgentConfig {
        name: "solo".into(),
        listen: "127.0.0.1:0".parse().unwrap(),
        api_listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.path().join("solo"),
        store_budget: shoal_store::Budget::Bytes(1 << 20),
        ..AgentConfig::default()
    };
    let mut c = c;
    c.mirror.listen = "127.0.0.1:0".parse().unwrap();
    let a = shoal_agent::start(c.resolve().unwrap()).await.unwrap();
    assert_ne!(a.peer.port(), 0);
    assert_eq!(a.node.cfg.data_addr(), a.peer);
    let m = a.node.membership.load();
    assert_eq!(m.addrs.get(&a.node.id), Some(&a.peer));
    drop(m);
    // Stopping leaves nothing behind: its gossip followers end with it.
    let node = a.node.clone();
    assert!(!node.tasks.is_empty(), "gossip followers run");
    a.stop().await;
    assert!(
        node.tasks.is_empty(),
        "{} tasks outlived the stop",
        node.tasks.len()
    );
    // The stop watcher lets go of its handle just after it signals.
    for _ in 0..100 {
        if std::sync::Arc::strong_count(&node) == 1 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(
        std::sync::Arc::strong_count(&node),
        1,
        "nothing holds the node"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_draining_node_refuses_replication_hints() {
    let bytes = vec![1u8; 200_000];
    let (url, origin) = origin(bytes.clone()).await;
    let c = cluster(2, 1 << 16, |_| {}).await;
    let (a, b) = (&c.agents[0], &c.agents[1]);
    let hint = ReplicateHint {
        stripe: c.stripe(&spec(&url, &bytes), 0),
        source: b.node.id,
        ttl_ms: 10_000,
    };
    a.node.draining.store(true, Ordering::SeqCst);
    let r = reqwest::Client::new()
        .get(format!(
            "http://{}{}?{}",
            a.peer,
            replicate::PATH,
            hint.to_query()
        ))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503, "a leaving node takes no new work");
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(origin.sent.load(Ordering::SeqCst), 0, "nothing was pulled");
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_reads_another_nodes_status_with_the_cluster_token() {
    let c = cluster(2, 1 << 16, |_| {}).await;
    let (a, b) = (&c.agents[0], &c.agents[1]);
    let limit = std::time::Duration::from_secs(5);
    let s = shoal_agent::endpoints::status::ask(&a.node.peer_client, b.peer, limit)
        .await
        .unwrap();
    assert_eq!(s.name, "n1");
    assert_eq!(s.members.len(), 2);
    let anonymous = reqwest::get(format!(
        "http://{}{}",
        b.peer,
        shoal_agent::endpoints::status::PATH
    ))
    .await
    .unwrap();
    assert_eq!(anonymous.status(), 401, "not without the token");
    c.stop().await;
}
