//! Finding the cluster: seeds (addresses or DNS names, re-resolved on
//! every attempt, as a Kubernetes headless Service needs), the full
//! roster pulled from one live peer and applied in one batch, retries
//! while alone, and periodic anti-entropy once connected.

use crate::gossip::{Gossip, GossipError};
use crate::roster::{MemberState, Record};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

/// A future a [`RosterSource`] returns.
pub type Fetch<'a> = Pin<Box<dyn Future<Output = Result<Vec<Record>, String>> + Send + 'a>>;

/// Where rosters come from: the agent fetches them over its peer protocol
/// (HTTP, with the cluster token); tests read them from memory.
pub trait RosterSource: Send + Sync + 'static {
    /// The roster of the member whose peer protocol is at `addr`.
    fn fetch(&self, addr: SocketAddr) -> Fetch<'_>;
}

/// Resolves seed entries (`IP:PORT` or `NAME:PORT`) to addresses, all of
/// them, now; an entry that does not resolve is skipped with a warning.
pub async fn resolve(seeds: &[String]) -> Vec<SocketAddr> {
    let mut out = Vec::new();
    for s in seeds {
        match tokio::net::lookup_host(s.as_str()).await {
            Ok(addrs) => out.extend(addrs),
            Err(e) => tracing::warn!(seed = %s, "seed does not resolve: {e}"),
        }
    }
    out.sort();
    out.dedup();
    out
}

/// Keeps `gossip` in the cluster until it stops: while it knows no live
/// peer, asks each seed in turn for the roster every `retry`; once
/// connected, pulls the roster of one random live member every `sync`.
pub async fn run(
    gossip: Gossip,
    seeds: Vec<String>,
    source: Arc<dyn RosterSource>,
    retry: Duration,
    sync: Duration,
    seed: u64,
) {
    let mut rng = StdRng::seed_from_u64(seed);
    let me = gossip.me().clone();
    let mut warned = false;
    loop {
        let roster = gossip.roster();
        let others: Vec<&Record> = roster
            .members
            .values()
            .filter(|r| r.peer.name != me.name && r.state != MemberState::Down)
            .collect();
        let result = if others.is_empty() {
            let joined = join_via_seeds(&gossip, &seeds, source.as_ref()).await;
            if !joined && !warned && !seeds.is_empty() {
                tracing::warn!("no seed answered; serving alone (from the origin) and retrying");
                warned = true;
            }
            if joined {
                warned = false;
            }
            tokio::time::sleep(retry).await;
            Ok(())
        } else {
            let pick = others[rng.random_range(0..others.len())].peer.data;
            drop(roster);
            tokio::time::sleep(sync).await;
            match source.fetch(pick).await {
                Ok(records) => gossip.merge(records).await,
                Err(e) => {
                    tracing::debug!(%pick, "roster sync: {e}");
                    Ok(())
                }
            }
        };
        if let Err(GossipError::Stopped) = result {
            return;
        }
        if gossip.snapshot().await.is_err() {
            return;
        }
    }
}

/// Tries every seed address once; true when one answered.
async fn join_via_seeds(gossip: &Gossip, seeds: &[String], source: &dyn RosterSource) -> bool {
    let me = gossip.me();
    for addr in resolve(seeds).await {
        if addr == me.data {
            continue;
        }
        let records = match source.fetch(addr).await {
            Ok(r) => r,
            Err(e) => {
                tracing::debug!(%addr, "seed: {e}");
                continue;
            }
        };
        // Announce to the seed itself when it lists itself, else to any
        // live member it lists.
        let via = records
            .iter()
            .filter(|r| r.peer.name != me.name && r.state != MemberState::Down)
            .find(|r| r.peer.data == addr)
            .or_else(|| {
                records
                    .iter()
                    .find(|r| r.peer.name != me.name && r.state != MemberState::Down)
            })
            .map(|r| r.peer.clone());
        let Some(via) = via else { continue };
        tracing::info!(%addr, members = records.len(), "joined through seed");
        return gossip.join(records, via).await.is_ok();
    }
    false
}

/// Rosters read straight from other nodes' gossip tasks by address, in
/// place of the agent's HTTP endpoint: for [`crate::MemoryNet`] clusters.
#[derive(Clone, Default)]
pub struct MemoryRosters(Arc<std::sync::Mutex<std::collections::HashMap<SocketAddr, Gossip>>>);

impl MemoryRosters {
    /// Serves `gossip`'s roster at `addr`.
    pub fn insert(&self, addr: SocketAddr, gossip: Gossip) {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(addr, gossip);
    }

    /// Stops serving at `addr`, as a killed node does.
    pub fn remove(&self, addr: SocketAddr) {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&addr);
    }
}

impl RosterSource for MemoryRosters {
    fn fetch(&self, addr: SocketAddr) -> Fetch<'_> {
        let g = self
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&addr)
            .cloned();
        Box::pin(async move {
            match g {
                Some(g) => g.snapshot().await.map_err(|e| e.to_string()),
                None => Err("connection refused".into()),
            }
        })
    }
}
