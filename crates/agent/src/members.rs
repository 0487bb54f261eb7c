//! Membership as the data plane sees it: a fixed list from the config, or
//! gossip (`shoal-membership`) whose roster is turned into a new placement
//! view, swapped in whole, on every change.

use crate::config::AgentConfig;
use crate::node::{Membership, Node};
use crate::peer::PeerClient;
use shoal_membership::bootstrap::{self, Fetch};
use shoal_membership::{Gossip, GossipError, MemberState, Peer, Record, Roster, RosterSource};
use shoal_placement::{Labels, Member, PlacementConfig, PlacementError, View};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Where a member's roster is served (peer port, cluster token).
pub const ROSTER_PATH: &str = "/peer/v1/roster";

/// The first membership view: the static list, or what `gossip` knows so
/// far (at least this node).
pub fn initial(c: &AgentConfig, gossip: Option<&Gossip>) -> Result<Membership, PlacementError> {
    match gossip {
        Some(g) => membership_of(&g.roster()),
        None => static_membership(c),
    }
}

/// The fixed membership of static mode: this node and its listed peers,
/// all alive.
pub fn static_membership(c: &AgentConfig) -> Result<Membership, PlacementError> {
    let me = Member::new(c.name.as_str(), Labels::new(c.labels.iter().cloned()));
    let mut members = vec![me.clone()];
    let mut addrs = HashMap::from([(me.id(), c.data_addr())]);
    for p in &c.peers {
        let m = Member::new(p.name.as_str(), Labels::new(p.labels.iter().cloned()));
        addrs.insert(m.id(), p.addr);
        members.push(m);
    }
    let view = View::with_members(PlacementConfig::default(), members)?;
    Ok(Membership { view, addrs })
}

/// The view a roster describes: every member it knows, those down marked
/// dead (so finger sets do not reshuffle while they are out).
pub fn membership_of(roster: &Roster) -> Result<Membership, PlacementError> {
    let members = roster.members.values().map(|r| {
        Member::new(
            r.peer.name.as_str(),
            Labels::new(r.peer.labels.iter().cloned()),
        )
    });
    let mut view = View::with_members(PlacementConfig::default(), members)?;
    let mut addrs = HashMap::new();
    for r in roster.members.values() {
        let id = shoal_placement::NodeId::from_name(&r.peer.name);
        addrs.insert(id, r.peer.data);
        if r.state == MemberState::Down {
            view.mark_dead(id);
        }
    }
    Ok(Membership { view, addrs })
}

/// This node's gossip identity. The generation is the start time, so a
/// restarted node (same name) replaces its old self.
pub fn identity(c: &AgentConfig) -> Peer {
    let generation = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_millis() as u64);
    Peer {
        name: c.name.clone(),
        data: c.data_addr(),
        gossip: c.gossip_addrs().1,
        labels: c.labels.clone(),
        generation,
    }
}

/// Rosters fetched from peers over HTTP, with the cluster token.
struct HttpRoster {
    client: reqwest::Client,
    token: Option<String>,
    /// Told the round trip of each pull.
    peers: PeerClient,
}

impl RosterSource for HttpRoster {
    fn fetch(&self, addr: SocketAddr) -> Fetch<'_> {
        Box::pin(async move {
            let mut req = self
                .client
                .get(format!("http://{addr}{ROSTER_PATH}"))
                .timeout(crate::timing::ROSTER);
            if let Some(t) = &self.token {
                req = req.bearer_auth(t);
            }
            let sent = tokio::time::Instant::now();
            let resp = req.send().await.map_err(|e| e.to_string())?;
            self.peers.observe(addr, sent.elapsed());
            if !resp.status().is_success() {
                return Err(format!("roster: HTTP {}", resp.status()));
            }
            let body = resp.bytes().await.map_err(|e| e.to_string())?;
            serde_json::from_slice::<Vec<Record>>(&body).map_err(|e| format!("roster: {e}"))
        })
    }
}

/// Starts gossip for `node`: keeps its view in step with the roster and
/// keeps it in the cluster (seeds, retries, anti-entropy).
pub fn follow(node: &Arc<Node>, gossip: Gossip) -> Result<(), GossipError> {
    let c = &node.cfg;
    let client = reqwest::Client::builder()
        .no_proxy()
        .build()
        .map_err(|_| GossipError::Stopped)?;
    let source = Arc::new(HttpRoster {
        client,
        token: node.cfg.token.clone(),
        peers: node.peer_client.clone(),
    });
    let g = &c.gossip;
    node.spawn_loop(bootstrap::run(
        gossip.clone(),
        c.seeds.clone(),
        source,
        Duration::from_millis(g.retry_ms),
        Duration::from_millis(g.sync_ms),
        node.id.0,
    ));
    node.spawn_loop(swap_views(node.clone(), gossip.subscribe()));
    Ok(())
}

/// Swaps in a new view for every new roster, until gossip stops.
async fn swap_views(node: Arc<Node>, mut rx: watch::Receiver<Arc<Roster>>) {
    loop {
        let roster = rx.borrow_and_update().clone();
        match membership_of(&roster) {
            Ok(m) => {
                tracing::debug!(version = roster.version, members = m.view.len(), "new view");
                node.membership.store(Arc::new(m));
            }
            Err(e) => tracing::warn!("roster rejected by placement: {e}"),
        }
        if rx.changed().await.is_err() {
            return;
        }
    }
}
