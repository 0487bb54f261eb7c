//! Agents run in this test's process (`shoal_agent::start`), with an
//! origin served from memory: data-path behaviour checked in seconds,
//! without processes or nginx. The process-level tests in `crates/cli`
//! prove the binary; these are for the logic.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use shoal_agent::config::PeerConfig;
use shoal_agent::endpoints::replicate::{self, ReplicateHint};
use shoal_agent::proto::Wire;
use shoal_agent::{AgentConfig, Running};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// An origin in memory: one object at `/object`, single ranges served,
/// every byte sent counted.
struct Origin {
    bytes: Vec<u8>,
    sent: AtomicU64,
}

/// GET and HEAD (axum answers HEAD with this handler, without the body).
async fn object(
    State(o): State<Arc<Origin>>,
    method: axum::http::Method,
    headers: HeaderMap,
) -> Response {
    let len = o.bytes.len() as u64;
    let (start, end) = match headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("bytes="))
        .and_then(|r| r.split_once('-'))
    {
        Some((a, b)) => {
            let a: u64 = a.parse().unwrap();
            let b: u64 = b.parse().map_or(len - 1, |b: u64| b.min(len - 1));
            (a, b + 1)
        }
        None => (0, len),
    };
    if method == axum::http::Method::GET {
        o.sent.fetch_add(end - start, Ordering::SeqCst);
    }
    let status = if headers.contains_key(header::RANGE) {
        StatusCode::PARTIAL_CONTENT
    } else {
        StatusCode::OK
    };
    let mut h = HeaderMap::new();
    h.insert(header::ETAG, "\"v1\"".parse().unwrap());
    h.insert(header::ACCEPT_RANGES, "bytes".parse().unwrap());
    if status == StatusCode::PARTIAL_CONTENT {
        let range = format!("bytes {start}-{}/{len}", end - 1);
        h.insert(header::CONTENT_RANGE, range.parse().unwrap());
    }
    (status, h, o.bytes[start as usize..end as usize].to_vec()).into_response()
}

async fn origin(bytes: Vec<u8>) -> (SocketAddr, Arc<Origin>) {
    let o = Arc::new(Origin {
        bytes,
        sent: AtomicU64::new(0),
    });
    let app = Router::new()
        .route("/object", get(object))
        .with_state(o.clone());
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, app).await });
    (addr, o)
}

/// A free loopback port (bound and released; the test's own agents are
/// the only other users of the range here).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `n` agents in this process that know each other statically.
async fn cluster(n: usize, dir: &tempfile::TempDir, stripe: u64) -> Vec<Running> {
    let ports: Vec<u16> = (0..n).map(|_| free_port()).collect();
    let mut out = Vec::new();
    for i in 0..n {
        let mut c = AgentConfig {
            name: format!("n{i}"),
            listen: SocketAddr::from(([127, 0, 0, 1], ports[i])),
            api_listen: "127.0.0.1:0".parse().unwrap(),
            data_dir: dir.path().join(format!("n{i}")),
            store_budget: shoal_store::Budget::Bytes(1 << 30),
            stripe_size: stripe,
            token: Some("in-process".into()),
            drain_ms: 500,
            ..AgentConfig::default()
        };
        c.mirror.listen = "127.0.0.1:0".parse().unwrap();
        c.peers = (0..n)
            .filter(|&j| j != i)
            .map(|j| PeerConfig {
                name: format!("n{j}"),
                addr: SocketAddr::from(([127, 0, 0, 1], ports[j])),
                labels: Vec::new(),
            })
            .collect();
        out.push(shoal_agent::start(c.resolve().unwrap()).await.unwrap());
    }
    out
}

async fn read_object(api: SocketAddr, url: &str) -> Vec<u8> {
    let r = reqwest::get(format!(
        "http://{api}/v1/object?url={}",
        url.replace(':', "%3A").replace('/', "%2F")
    ))
    .await
    .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    r.bytes().await.unwrap().to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_reads_on_every_node_fetch_each_byte_from_the_origin_once() {
    shoal_agent::install_crypto_provider();
    let bytes: Vec<u8> = (0..(3 << 20) + 12345)
        .map(|i| (i * 7 % 251) as u8)
        .collect();
    let (addr, origin) = origin(bytes.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let agents = cluster(3, &dir, 1 << 20).await;
    let url = format!("http://{addr}/object");
    // Four readers on each node, all at once, cold.
    let reads: Vec<_> = agents
        .iter()
        .flat_map(|a| std::iter::repeat_n(a.api, 4))
        .map(|api| {
            let url = url.clone();
            tokio::spawn(async move { read_object(api, &url).await })
        })
        .collect();
    for r in reads {
        assert!(r.await.unwrap() == bytes, "every reader gets the object");
    }
    // The stripes came from the origin once (HEADs send no body).
    assert_eq!(origin.sent.load(Ordering::SeqCst), bytes.len() as u64);
    // Stopping waits for flights and replication: none outlives it.
    for a in agents {
        let node = a.node.clone();
        a.stop().await;
        assert!(node.tasks.is_empty(), "{} tasks left", node.tasks.len());
    }
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
    let (addr, origin) = origin(bytes).await;
    let dir = tempfile::tempdir().unwrap();
    let agents = cluster(2, &dir, 1 << 16).await;
    let (a, b) = (&agents[0], &agents[1]);
    let hint = ReplicateHint {
        stripe: shoal_agent::proto::StripeRef {
            object: shoal_agent::proto::ObjectSpec {
                url: format!("http://{addr}/object"),
                size: 200_000,
                validator: Some("\"v1\"".into()),
                digest: None,
            },
            stripe_size: 1 << 16,
            index: 0,
        },
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
        .bearer_auth("in-process")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503, "a leaving node takes no new work");
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(origin.sent.load(Ordering::SeqCst), 0, "nothing was pulled");
    for a in agents {
        a.stop().await;
    }
}
