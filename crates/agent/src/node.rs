//! The agent's shared state: who it is, the membership view, the store,
//! flights in progress and the clients it talks through.

use crate::config::Resolved;
use crate::flight::Flight;
use crate::metrics::Metrics;
use crate::origin::{Origin, OriginError};
use crate::peer::PeerClient;
use arc_swap::ArcSwap;
use rand::SeedableRng;
use rand::rngs::StdRng;
use shoal_placement::{Labels, Member, NodeId, PlacementConfig, PlacementError, View};
use shoal_store::{EntryKey, Store, StoreError};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

/// What the data plane knows of the cluster, swapped as one value.
pub struct Membership {
    /// The placement view.
    pub view: View,
    /// Where each member's peer protocol listens.
    pub addrs: HashMap<NodeId, SocketAddr>,
}

/// Why the agent could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The store would not open.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The static roster is invalid.
    #[error("membership: {0}")]
    Placement(#[from] PlacementError),
    /// The origin client would not build.
    #[error(transparent)]
    Origin(#[from] OriginError),
    /// A listener would not bind.
    #[error("binding {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
}

/// One agent's state, shared by every request it handles.
pub struct Node {
    /// This node's id.
    pub id: NodeId,
    /// Settings.
    pub cfg: Resolved,
    /// The current membership; a change swaps in a new one atomically.
    pub membership: ArcSwap<Membership>,
    /// Stripes on disk.
    pub store: Store,
    /// Stripes being fetched here, by store key.
    pub flights: Mutex<HashMap<EntryKey, Arc<Flight>>>,
    /// Client for peers.
    pub peers: PeerClient,
    /// Client for origins.
    pub origin: Origin,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    rng: Mutex<StdRng>,
}

/// A seed for path coins: they need to differ between nodes and runs, not
/// to be secret.
fn seed(id: NodeId) -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    id.0 ^ nanos ^ u64::from(std::process::id()).rotate_left(32)
}

impl Node {
    /// Opens the store and builds the static membership from the config.
    pub fn new(cfg: Resolved) -> Result<Arc<Node>, StartError> {
        let c = &cfg.config;
        let metrics = Arc::new(Metrics::default());
        let store = Store::open(&c.data_dir, cfg.budget)?;
        let me = Member::new(c.name.as_str(), Labels::new(c.labels.iter().cloned()));
        let advertise = c.advertise.unwrap_or(c.listen);
        let mut members = vec![me.clone()];
        let mut addrs = HashMap::from([(me.id(), advertise)]);
        for p in &c.peers {
            let m = Member::new(p.name.as_str(), Labels::new(p.labels.iter().cloned()));
            addrs.insert(m.id(), p.addr);
            members.push(m);
        }
        let view = View::with_members(PlacementConfig::default(), members)?;
        let peers = PeerClient::new(
            c.timeouts.clone(),
            c.peer_inflight,
            cfg.token.clone(),
            metrics.clone(),
        );
        let origin = Origin::new(c.origin_concurrency, metrics.clone())?;
        Ok(Arc::new(Node {
            id: me.id(),
            membership: ArcSwap::from_pointee(Membership { view, addrs }),
            store,
            flights: Mutex::new(HashMap::new()),
            peers,
            origin,
            metrics,
            rng: Mutex::new(StdRng::seed_from_u64(seed(me.id()))),
            cfg,
        }))
    }

    /// Runs `f` with this node's RNG (path coins).
    pub fn with_rng<T>(&self, f: impl FnOnce(&mut StdRng) -> T) -> T {
        let mut rng = self.rng.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut rng)
    }

    /// The flights map, locked.
    pub fn flights(&self) -> std::sync::MutexGuard<'_, HashMap<EntryKey, Arc<Flight>>> {
        self.flights.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Refreshes the store gauges.
    pub fn refresh_store_metrics(&self) {
        let s = self.store.stats();
        self.metrics.store_bytes.set(s.committed as i64);
        self.metrics.store_evictions.set(s.evictions as i64);
    }
}
