//! Membership as the data plane sees it: a fixed list from the config, or
//! gossip (`shoal-membership`) whose roster is turned into a new placement
//! view, swapped in whole, on every change.

use crate::config::AgentConfig;
use crate::endpoints::roster;
use crate::node::{Membership, Node};
use shoal_membership::bootstrap;
use shoal_membership::{Gossip, GossipError, MemberState, Peer, Roster};
use shoal_placement::{Labels, Member, PlacementConfig, PlacementError, View};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// A thread of its own for gossip and its UDP transport. SWIM's timers
/// and packets must not queue behind the data plane's tasks on a busy
/// node: a probe answered late is a node declared down, and the stripes
/// it owns fetched again by stand-ins. Dropping it stops the thread.
pub struct GossipThread(Option<tokio::runtime::Runtime>);

impl GossipThread {
    /// Starts the thread (`shoal-gossip`).
    pub fn start() -> std::io::Result<GossipThread> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .max_blocking_threads(1)
            .thread_name("shoal-gossip")
            .enable_all()
            .build()?;
        Ok(GossipThread(Some(rt)))
    }

    /// Runs `task` on the thread (what it spawns stays there) and waits
    /// for its result.
    pub async fn run<T: Send + 'static>(
        &self,
        task: impl std::future::Future<Output = T> + Send + 'static,
    ) -> Option<T> {
        let rt = self.0.as_ref()?;
        rt.spawn(task).await.ok()
    }
}

impl Drop for GossipThread {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

/// The first membership view: the static list, or what `gossip` knows so
/// far (at least this node).
pub fn initial(c: &AgentConfig, gossip: Option<&Gossip>) -> Result<Membership, PlacementError> {
    match gossip {
        Some(g) => membership_of(&g.roster(), placement(c)),
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
    let view = View::with_members(placement(c), members)?;
    Ok(Membership { view, addrs })
}

/// The view a roster describes: every member it knows, those down marked
/// dead (so finger sets do not reshuffle while they are out).
pub fn membership_of(roster: &Roster, pc: PlacementConfig) -> Result<Membership, PlacementError> {
    let members = roster.members.values().map(|r| {
        Member::new(
            r.peer.name.as_str(),
            Labels::new(r.peer.labels.iter().cloned()),
        )
    });
    let mut view = View::with_members(pc, members)?;
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

/// The placement settings of `c`: the defaults, with rack relays off
/// (`rack_relay_min` out of reach) when `piece_size` is 0, so paths do not
/// route as if relays carried the pieces (`View::relays_ask_owner`).
pub fn placement(c: &AgentConfig) -> PlacementConfig {
    PlacementConfig {
        rack_relay_min: if c.piece_size == 0 {
            usize::MAX
        } else {
            PlacementConfig::default().rack_relay_min
        },
        ..PlacementConfig::default()
    }
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

/// Starts gossip for `node`: keeps its view in step with the roster and
/// keeps it in the cluster (seeds, retries, anti-entropy).
pub fn follow(node: &Arc<Node>, gossip: Gossip) -> Result<(), GossipError> {
    let c = &node.cfg;
    let source = Arc::new(
        roster::Client::new(
            node.cfg.token.clone(),
            node.tls.as_ref().and_then(|t| t.client_config().ok()),
            node.peer_client.clone(),
        )
        .map_err(|_| GossipError::Stopped)?,
    );
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
        match membership_of(&roster, placement(&node.cfg)) {
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
