//! What `shoal status` shows: members, ring, store, transfers and
//! breakers, as JSON from the local API.

use crate::node::Node;
use serde::{Deserialize, Serialize};
use shoal_membership::MemberState;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;

/// Where the status is served (local API).
pub const STATUS_PATH: &str = "/v1/status";

/// One member as this node sees it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct MemberStatus {
    /// Node name.
    pub name: String,
    /// Placement id, hex.
    pub id: String,
    /// Peer-protocol address.
    pub addr: SocketAddr,
    /// Topology labels, widest first.
    pub labels: Vec<String>,
    /// alive, suspect or down.
    pub state: MemberState,
    /// Process generation (start time in Unix ms; 0 in static mode).
    pub generation: u64,
    /// When this node saw its state change, Unix ms (0 if unknown).
    pub changed_ms: u64,
}

/// The store's use.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StoreStatus {
    /// Budget in bytes.
    pub budget: u64,
    /// Bytes of admitted stripes.
    pub used: u64,
    /// Admitted stripes.
    pub entries: u64,
    /// Lookups that found their stripe, over all lookups (0 when none).
    pub hit_ratio: f64,
}

/// Everything `shoal status` prints.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Status {
    /// This node's name.
    pub name: String,
    /// `gossip` or `static`.
    pub membership: String,
    /// Members in the placement ring (dead ones included until forgotten).
    pub ring_size: usize,
    /// Members alive in the ring.
    pub alive: usize,
    /// Every member.
    pub members: Vec<MemberStatus>,
    /// The store.
    pub store: StoreStatus,
    /// Stripes being fetched on this node now.
    pub inflight: usize,
    /// Peers whose circuit breaker is open.
    pub open_breakers: Vec<SocketAddr>,
    /// Whether the node is shutting down.
    pub draining: bool,
    /// Problems start-up found on this node (containerd not reading the
    /// hosts files, a failed Node lookup), one sentence each.
    #[serde(default)]
    pub problems: Vec<String>,
}

/// Builds the status.
pub async fn status(node: &Node) -> Status {
    let m = node.membership.load();
    let records = node.roster().await;
    let mut members: Vec<MemberStatus> = match &records {
        Some(records) => records
            .iter()
            .map(|r| MemberStatus {
                id: shoal_placement::NodeId::from_name(&r.peer.name).to_string(),
                name: r.peer.name.clone(),
                addr: r.peer.data,
                labels: r.peer.labels.clone(),
                state: r.state,
                generation: r.peer.generation,
                changed_ms: r.changed_ms,
            })
            .collect(),
        None => m
            .view
            .members()
            .map(|(id, member, alive)| MemberStatus {
                name: member.name.to_string(),
                id: id.to_string(),
                addr: m.addrs.get(&id).copied().unwrap_or(node.cfg.data_addr()),
                labels: member.labels.as_slice().to_vec(),
                state: if alive {
                    MemberState::Alive
                } else {
                    MemberState::Down
                },
                generation: 0,
                changed_ms: 0,
            })
            .collect(),
    };
    members.sort_by(|a, b| a.name.cmp(&b.name));
    let s = node.store.stats();
    let lookups = s.hits + s.misses;
    Status {
        name: node.cfg.name.clone(),
        membership: if records.is_some() {
            "gossip"
        } else {
            "static"
        }
        .into(),
        ring_size: m.view.len(),
        alive: m.view.alive_count(),
        members,
        store: StoreStatus {
            budget: s.budget,
            used: s.committed,
            entries: s.entries,
            hit_ratio: if lookups == 0 {
                0.0
            } else {
                s.hits as f64 / lookups as f64
            },
        },
        inflight: node.flights().len(),
        open_breakers: node.peer_client.open_breakers(),
        draining: node.draining.load(Ordering::SeqCst),
        problems: node.host.problems(),
    }
}
