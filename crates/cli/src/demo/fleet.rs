//! The demo's agents: real `shoal agent` processes (this binary), each
//! with its own ports and data directory under one temporary directory,
//! joined by gossip through the first. Dropping the fleet kills every
//! agent still running and removes the directory, also when the demo
//! fails half-way.

use anyhow::{Context, Result, bail};
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// One agent process.
pub struct Node {
    /// Its name (`n0`, `n1`, ...).
    pub name: String,
    /// Its local API.
    pub api: SocketAddr,
    child: Option<Child>,
}

/// Every agent of the demo, and the directory they keep their data in.
pub struct Fleet {
    /// The agents, in order.
    pub nodes: Vec<Node>,
    dir: PathBuf,
}

/// A free port on loopback, for TCP and UDP (gossip shares the listen
/// port), released before the agent binds it. It is picked below the
/// kernel's ephemeral range (32768 and up by default), so no outgoing
/// connection of this or another process takes it in between, from a
/// random start, so demos and tests running at once keep apart, and
/// never twice in one process. A clash left fails loudly.
fn free_port() -> Result<u16> {
    use std::hash::{BuildHasher, Hasher};
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    const LOW: u64 = 20_000;
    const SPAN: u64 = 12_000;
    let start = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    let mut given = GIVEN.lock().unwrap_or_else(|p| p.into_inner());
    for k in 0..SPAN {
        let port = u16::try_from(LOW + (start.wrapping_add(k) % SPAN)).unwrap_or(20_000);
        if given.contains(&port) {
            continue;
        }
        if TcpListener::bind(("127.0.0.1", port)).is_ok()
            && std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok()
        {
            given.push(port);
            return Ok(port);
        }
    }
    bail!("no free port on loopback between 20000 and 31999")
}

impl Fleet {
    /// Starts `n` agents with `stripe` stripes, all seeded with the
    /// first, that may fetch from the origin pattern `allow`.
    pub fn start(n: usize, stripe: &str, allow: &str) -> Result<Fleet> {
        let dir = std::env::temp_dir().join(format!("shoal-demo-{}", std::process::id()));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let exe = std::env::current_exe().context("finding the shoal binary")?;
        let mut fleet = Fleet {
            nodes: Vec::new(),
            dir,
        };
        let ports: Vec<u16> = (0..n).map(|_| free_port()).collect::<Result<_>>()?;
        for (i, &port) in ports.iter().enumerate() {
            let name = format!("n{i}");
            let api = SocketAddr::from(([127, 0, 0, 1], free_port()?));
            let data = fleet.dir.join(&name);
            let log = std::fs::File::create(fleet.dir.join(format!("{name}.log")))?;
            let child = Command::new(&exe)
                .arg("agent")
                .args(["--name", &name])
                .args(["--listen", &format!("127.0.0.1:{port}")])
                .args(["--api-listen", &api.to_string()])
                .args(["--mirror-listen", &format!("127.0.0.1:{}", free_port()?)])
                .arg("--data-dir")
                .arg(&data)
                .args(["--token", "shoal-demo"])
                .args(["--labels", &format!("row-0,rack-{}", i % 2)])
                .args(["--stripe-size", stripe])
                .args(["--allow-origin", allow])
                .args(["--store-budget", "4GiB"])
                .args(["--seed", &format!("127.0.0.1:{}", ports[0])])
                .env("SHOAL_LOG", "warn")
                // Errors, not backtraces, in the log the demo quotes.
                .env_remove("RUST_BACKTRACE")
                .env_remove("RUST_LIB_BACKTRACE")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .context("starting an agent")?;
            fleet.nodes.push(Node {
                name,
                api,
                child: Some(child),
            });
        }
        Ok(fleet)
    }

    /// Waits until every agent sees all `n` members alive.
    pub async fn wait_joined(&mut self, client: &reqwest::Client, limit: Duration) -> Result<()> {
        let n = self.nodes.len();
        let started = Instant::now();
        loop {
            let mut joined = 0;
            for node in &mut self.nodes {
                if let Some(Ok(Some(status))) = node.child.as_mut().map(Child::try_wait) {
                    // The directory goes when the fleet drops: quote the log.
                    let log = std::fs::read_to_string(self.dir.join(format!("{}.log", node.name)))
                        .unwrap_or_default();
                    let tail: Vec<&str> = log.lines().rev().take(5).collect();
                    let tail: Vec<&str> = tail.into_iter().rev().collect();
                    bail!("agent {} exited ({status}): {}", node.name, tail.join("\n"));
                }
                let url = format!("http://{}{}", node.api, shoal_agent::status::STATUS_PATH);
                let alive = match client.get(&url).send().await {
                    Ok(r) => r
                        .json::<shoal_agent::status::Status>()
                        .await
                        .map_or(0, |s| s.alive),
                    Err(_) => 0,
                };
                joined += usize::from(alive == n);
            }
            if joined == n {
                return Ok(());
            }
            if started.elapsed() > limit {
                bail!("the agents did not form one mesh within {limit:?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Kills agent `i` with SIGKILL, as a node that dies does.
    pub fn kill(&mut self, i: usize) -> Result<()> {
        if let Some(mut c) = self.nodes[i].child.take() {
            c.kill().context("killing an agent")?;
            let _ = c.wait();
        }
        Ok(())
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            if let Some(mut c) = node.child.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The counters of one agent that the demo reports, from its `/metrics`.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize)]
pub struct Counters {
    /// Stripe bytes it served from its store (to its own client or peers).
    pub store: f64,
    /// Stripe bytes it fetched from peers.
    pub peers: f64,
    /// Bytes it received from the origin.
    pub origin: f64,
}

impl Counters {
    /// Reads `node`'s counters; zeros for a node that does not answer.
    pub async fn read(client: &reqwest::Client, node: &Node) -> Counters {
        let url = format!("http://{}/metrics", node.api);
        let body = match client.get(&url).send().await {
            Ok(r) => r.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        Counters::parse(&body)
    }

    fn parse(body: &str) -> Counters {
        let sum = |name: &str, label: &str| {
            body.lines()
                .filter(|l| l.starts_with(name) && l.to_ascii_lowercase().contains(label))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .sum::<f64>()
        };
        Counters {
            store: sum("shoal_served_bytes_total", "source=\"store\""),
            peers: sum("shoal_served_bytes_total", "source=\"peer\""),
            origin: sum("shoal_origin_bytes_total", ""),
        }
    }

    /// What grew from `before` to `self`.
    pub fn since(self, before: Counters) -> Counters {
        Counters {
            store: self.store - before.store,
            peers: self.peers - before.peers,
            origin: self.origin - before.origin,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_come_from_the_exposition() {
        let body = "# HELP shoal_served_bytes Stripe bytes\n\
                    shoal_served_bytes_total{source=\"Store\"} 10\n\
                    shoal_served_bytes_total{source=\"Peer\"} 20\n\
                    shoal_served_bytes_total{source=\"Origin\"} 5\n\
                    shoal_origin_bytes_total 7\n";
        let c = Counters::parse(body);
        assert_eq!((c.store, c.peers, c.origin), (10.0, 20.0, 7.0));
        assert_eq!(c.since(Counters::default()), c);
    }
}
