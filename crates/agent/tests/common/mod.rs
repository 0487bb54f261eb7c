//! The in-process test harness: agents started in the test's own process
//! with `shoal_agent::start` (static membership on loopback, cluster
//! token), an origin served from memory that counts every byte it sends,
//! a TCP proxy that corrupts what it relays, and checks on what each
//! agent's store holds. Tests with it check the data path's logic in
//! seconds; `crates/cli/tests` proves the binary with real processes.
#![allow(dead_code)]

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use sha2::Digest;
use shoal_agent::config::PeerConfig;
use shoal_agent::proto::{ObjectSpec, StripeRef, StripeRequest, Wire};
use shoal_agent::{AgentConfig, Running};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The cluster token of every test cluster.
pub const TOKEN: &str = "in-process";

/// An origin in memory: one object at `/object`, single ranges served,
/// every GET's range and every byte sent counted.
pub struct Origin {
    bytes: Vec<u8>,
    /// Bytes sent in GET bodies.
    pub sent: AtomicU64,
    /// Every GET's range `[start, end)`.
    pub gets: Mutex<Vec<(u64, u64)>>,
    /// How long each GET waits before it answers, in milliseconds (a slow
    /// origin keeps fetches in flight).
    pub delay_ms: AtomicU64,
}

impl Origin {
    /// Asserts every byte was sent exactly once: GET ranges that are
    /// disjoint and cover the object.
    pub fn assert_served_once(&self) {
        let mut ranges = self.gets.lock().unwrap().clone();
        ranges.sort();
        let mut at = 0;
        for (a, b) in &ranges {
            assert_eq!(*a, at, "gap or overlap at byte {at}: {ranges:?}");
            at = *b;
        }
        assert_eq!(
            at,
            self.bytes.len() as u64,
            "the origin sent the whole object"
        );
    }
}

/// GET and HEAD (axum answers HEAD with this handler, without the body).
async fn object(State(o): State<Arc<Origin>>, method: Method, headers: HeaderMap) -> Response {
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
    if method == Method::GET {
        let delay = o.delay_ms.load(Ordering::SeqCst);
        if delay > 0 {
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
        o.sent.fetch_add(end - start, Ordering::SeqCst);
        o.gets.lock().unwrap().push((start, end));
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

/// Serves `bytes` at `http://<addr>/object`.
pub async fn origin(bytes: Vec<u8>) -> (String, Arc<Origin>) {
    let o = Arc::new(Origin {
        bytes,
        sent: AtomicU64::new(0),
        gets: Mutex::new(Vec::new()),
        delay_ms: AtomicU64::new(0),
    });
    let app = Router::new()
        .route("/object", get(object))
        .with_state(o.clone());
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, app).await });
    (format!("http://{addr}/object"), o)
}

/// Bytes that do not repeat within a stripe, from `seed`.
pub fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// `sha256:<hex>` of `bytes`.
pub fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(bytes)))
}

/// A free loopback port (bound and released), below the ephemeral range
/// so that listeners bound to port 0 meanwhile never take it.
pub fn free_port() -> u16 {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let base = 20_000 + (std::process::id() as u64 * 211) % 10_000;
    loop {
        let port = (base + NEXT.fetch_add(1, Ordering::SeqCst) % 12_000) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// Agents `n0`..`n{n-1}` in this process that know each other statically.
pub struct Cluster {
    /// The running agents, by index.
    pub agents: Vec<Running>,
    dir: tempfile::TempDir,
}

/// `n` agents with `stripe`-byte stripes, 1 GiB stores and `tweak`
/// applied to each one's settings.
pub async fn cluster(n: usize, stripe: u64, tweak: impl Fn(&mut AgentConfig)) -> Cluster {
    cluster_with(n, stripe, tweak, |_, _, real| real).await
}

/// As [`cluster`], with agent `i` reaching agent `j` at `route(i, j,
/// real address)`: a proxy, or nowhere.
pub async fn cluster_with(
    n: usize,
    stripe: u64,
    tweak: impl Fn(&mut AgentConfig),
    route: impl Fn(usize, usize, SocketAddr) -> SocketAddr,
) -> Cluster {
    shoal_agent::install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    let addrs: Vec<SocketAddr> = (0..n)
        .map(|_| SocketAddr::from(([127, 0, 0, 1], free_port())))
        .collect();
    let mut agents = Vec::new();
    for i in 0..n {
        let mut c = AgentConfig {
            name: format!("n{i}"),
            listen: addrs[i],
            api_listen: "127.0.0.1:0".parse().unwrap(),
            data_dir: dir.path().join(format!("n{i}")),
            store_budget: shoal_store::Budget::Bytes(1 << 30),
            stripe_size: stripe,
            token: Some(TOKEN.into()),
            drain_ms: 500,
            ..AgentConfig::default()
        };
        c.mirror.listen = "127.0.0.1:0".parse().unwrap();
        // The tests' origins listen on loopback.
        c.origins.allow = vec!["127.0.0.1".into()];
        c.peers = (0..n)
            .filter(|&j| j != i)
            .map(|j| PeerConfig {
                name: format!("n{j}"),
                addr: route(i, j, addrs[j]),
                labels: Vec::new(),
            })
            .collect();
        tweak(&mut c);
        agents.push(shoal_agent::start(c.resolve().unwrap()).await.unwrap());
    }
    Cluster { agents, dir }
}

impl Cluster {
    /// Stops every agent and checks none left a task running.
    pub async fn stop(self) {
        for a in self.agents {
            let node = a.node.clone();
            a.stop().await;
            assert!(node.tasks.is_empty(), "{} tasks left", node.tasks.len());
        }
    }

    /// Stripe `index` of `spec` as the agents cut it.
    pub fn stripe(&self, spec: &ObjectSpec, index: u64) -> StripeRef {
        StripeRef {
            object: spec.clone(),
            stripe_size: self.agents[0].node.cfg.stripe_size,
            index,
        }
    }

    /// The number of stripes of `spec`.
    pub fn stripes(&self, spec: &ObjectSpec) -> u64 {
        spec.size.div_ceil(self.agents[0].node.cfg.stripe_size)
    }

    /// Which agents hold stripe `index` of `spec` in their store.
    pub fn holders(&self, spec: &ObjectSpec, index: u64) -> Vec<usize> {
        let key = self.stripe(spec, index).entry_key();
        (0..self.agents.len())
            .filter(|&i| self.agents[i].node.store.contains(&key))
            .collect()
    }

    /// The owner and the next `r - 1` successors of stripe `index`.
    pub fn successors(&self, spec: &ObjectSpec, index: u64, r: usize) -> Vec<usize> {
        let m = self.agents[0].node.membership.load();
        m.view
            .successors(self.stripe(spec, index).key(), r)
            .into_iter()
            .map(|id| {
                (0..self.agents.len())
                    .find(|&i| self.agents[i].node.id == id)
                    .unwrap()
            })
            .collect()
    }

    /// Where agent `i` keeps its stripe files.
    pub fn data_dir(&self, i: usize) -> PathBuf {
        self.dir.path().join(format!("n{i}")).join("data")
    }

    /// Puts every stripe on its owner only: asks each owner itself, with
    /// an empty path, so it reads the stripe from the origin.
    pub async fn warm_on_owners(&self, spec: &ObjectSpec) {
        let client = reqwest::Client::new();
        for i in 0..self.stripes(spec) {
            let owner = self.successors(spec, i, 1)[0];
            let req = StripeRequest::new(self.stripe(spec, i), &[], &[], 60_000);
            let url = format!(
                "http://{}{}?{}",
                self.agents[owner].peer,
                shoal_agent::endpoints::stripe::PATH,
                req.to_query()
            );
            let r = client.get(url).bearer_auth(TOKEN).send().await.unwrap();
            assert_eq!(r.status(), 200);
            r.bytes().await.unwrap();
            assert!(self.holders(spec, i).contains(&owner));
        }
    }

    /// Asserts every stripe file any agent holds matches the checksum its
    /// name claims and is a stripe of `data`; returns how many there are.
    pub fn assert_admitted_true(&self, data: &[u8]) -> usize {
        let stripe = self.agents[0].node.cfg.stripe_size as usize;
        let truth: Vec<String> = data
            .chunks(stripe)
            .map(|s| blake3::hash(s).to_hex().to_string())
            .collect();
        let mut admitted = 0;
        for i in 0..self.agents.len() {
            for (path, claimed) in stripe_files(&self.data_dir(i)) {
                let actual = blake3::hash(&std::fs::read(&path).unwrap()).to_hex();
                assert_eq!(
                    actual.as_str(),
                    claimed,
                    "n{i} holds a stripe unlike its checksum"
                );
                assert!(
                    truth.contains(&claimed),
                    "n{i} holds a stripe not in the object"
                );
                admitted += 1;
            }
        }
        admitted
    }
}

/// The object at `url`, as agents identify it when read with `digest`.
pub fn spec(url: &str, data: &[u8]) -> ObjectSpec {
    ObjectSpec {
        url: url.to_owned(),
        size: data.len() as u64,
        validator: None,
        digest: Some(sha256(data)),
    }
}

/// Every stripe file under a store's data directory: (path, the checksum
/// its name claims).
pub fn stripe_files(dir: &Path) -> Vec<(PathBuf, String)> {
    let mut out = Vec::new();
    for shard in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        for f in std::fs::read_dir(shard.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            let name = f.file_name().to_string_lossy().into_owned();
            if let Some((_, sum)) = name.split_once('.') {
                out.push((f.path(), sum.to_owned()));
            }
        }
    }
    out
}

/// Bytes of every file under `dir`.
pub fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

/// Reads the object at `url` through the local API at `api` (checked
/// against `digest` if given).
pub async fn read(api: SocketAddr, url: &str, digest: Option<&str>) -> Result<Vec<u8>, String> {
    let mut q = vec![("url", url)];
    if let Some(d) = digest {
        q.push(("digest", d));
    }
    let r = reqwest::Client::new()
        .get(format!("http://{api}/v1/object"))
        .query(&q)
        .timeout(Duration::from_secs(120))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if !r.status().is_success() {
        return Err(format!(
            "{}: {}",
            r.status(),
            r.text().await.unwrap_or_default()
        ));
    }
    r.bytes()
        .await
        .map(|b| b.to_vec())
        .map_err(|e| e.to_string())
}

/// A TCP proxy to `target` that flips one byte in every `every` bytes it
/// relays from the server, past the first 4 KiB of each connection (the
/// headers); `flips` counts them.
pub async fn corrupting_proxy(target: SocketAddr, every: u64, flips: Arc<AtomicU64>) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let Ok(server) = tokio::net::TcpStream::connect(target).await else {
                continue;
            };
            let (mut c_in, mut c_out) = client.into_split();
            let (mut s_in, mut s_out) = server.into_split();
            tokio::spawn(async move {
                let _ = tokio::io::copy(&mut c_in, &mut s_out).await;
                let _ = s_out.shutdown().await;
            });
            let flips = flips.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 64 * 1024];
                let mut offset = 0u64;
                loop {
                    let n = match s_in.read(&mut buf).await {
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
                    if c_out.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
                let _ = c_out.shutdown().await;
            });
        }
    });
    addr
}

/// A TCP proxy to the address `target` will hold, which goes silent for
/// good once `dark` is set: it forwards nothing more either way on the
/// connections it has and on new ones, as a peer that hangs does (its
/// process stopped, its host gone, a black-holed route).
pub async fn darkening_proxy(
    target: Arc<std::sync::OnceLock<SocketAddr>>,
    dark: Arc<std::sync::atomic::AtomicBool>,
) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    /// Copies until `dark`, then holds the connection open and silent.
    async fn pump(
        mut from: tokio::net::tcp::OwnedReadHalf,
        mut to: tokio::net::tcp::OwnedWriteHalf,
        dark: Arc<std::sync::atomic::AtomicBool>,
    ) {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = match from.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            if dark.load(Ordering::SeqCst) {
                std::future::pending::<()>().await;
            }
            if to.write_all(&buf[..n]).await.is_err() {
                break;
            }
        }
        let _ = to.shutdown().await;
    }
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let Some(&target) = target.get() else {
                continue;
            };
            let Ok(server) = tokio::net::TcpStream::connect(target).await else {
                continue;
            };
            let (c_in, c_out) = client.into_split();
            let (s_in, s_out) = server.into_split();
            tokio::spawn(pump(c_in, s_out, dark.clone()));
            tokio::spawn(pump(s_in, c_out, dark.clone()));
        }
    });
    addr
}
