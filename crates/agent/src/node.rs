//! The agent's shared state: who it is, the membership view, the store,
//! flights in progress and the clients it talks through.

use crate::config::Resolved;
use crate::flight::Flight;
use crate::metrics::Metrics;
use crate::origin::registries::Registries;
use crate::origin::{Origin, OriginError};
use crate::peer::PeerClient;
use arc_swap::ArcSwap;
use hashlink::LruCache;
use rand::SeedableRng;
use rand::rngs::StdRng;
use shoal_membership::Gossip;
use shoal_placement::{Key, NodeId, PlacementError, RelayPlan, View};
use shoal_store::{EntryKey, Store, StoreError};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

/// A flight's place in the flights map: its stripe, and whether it is
/// fetched in pieces through rack relays. A node runs at most one of each
/// kind per stripe: a path flight for hops that ask it, and a pieced one
/// for its own client and its rack (see `crate::serve`).
pub type FlightKey = (EntryKey, bool);

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
    /// The peer TLS files are unusable.
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    /// The origin allow-list is malformed.
    #[error("origins.allow: {0}")]
    Origins(String),
    /// Gossip would not start.
    #[error("gossip: {0}")]
    Gossip(String),
    /// The mirror's settings are unusable.
    #[error("mirror: {0}")]
    Mirror(#[from] crate::origin::registries::UpstreamError),
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
    /// The settings it runs with (checked, token read).
    pub cfg: Resolved,
    /// The current membership; a change swaps in a new one atomically.
    pub membership: ArcSwap<Membership>,
    /// Stripes on disk.
    pub store: Store,
    /// Stripes being fetched here, by store key.
    pub flights: Mutex<HashMap<FlightKey, Arc<Flight>>>,
    /// The client this node calls its peers with (pools, timeouts,
    /// breakers).
    pub peer_client: PeerClient,
    /// Peer TLS material, when `tls` is set (reloaded by a background
    /// loop).
    pub tls: Option<Arc<crate::tls::PeerTls>>,
    /// The client it fetches from origins and registries with (a bound
    /// on concurrent requests, registry auth).
    pub origin: Origin,
    /// Its Prometheus metrics, shared with the clients that count.
    pub metrics: Arc<Metrics>,
    /// Gossip, unless membership is a static list.
    pub gossip: Option<Gossip>,
    /// Set once the node is shutting down: it takes no new work.
    pub draining: AtomicBool,
    /// Every task this node spawns (flights, pumps, replication, recovery
    /// reads, membership followers): stopping waits for them up to the
    /// drain time, and says how many it had to leave behind.
    pub tasks: tokio_util::task::TaskTracker,
    /// Cancelled when the agent stops: ends its background loops.
    pub stopping: tokio_util::sync::CancellationToken,
    /// What start-up found on this node (labels' source, containerd).
    pub host: crate::startup::HostReport,
    /// Which peer sent each stripe this node fetched from one, kept for
    /// the most recent [`SOURCES`] stripes: when a whole object fails its
    /// digest, these are the copies to distrust.
    sources: Mutex<LruCache<EntryKey, SocketAddr>>,
    /// Each recent object's relay plan for this node's rack, with the
    /// membership it was made from (see [`Node::relay_plan`]).
    relay_plans: Mutex<LruCache<(Key, u64), MadePlan>>,
    rng: Mutex<StdRng>,
}

/// A relay plan and the membership it was made from.
type MadePlan = (Arc<Membership>, Arc<RelayPlan>);

/// Objects whose relay plans are remembered at most.
const RELAY_PLANS: usize = 64;

/// Stripe sources remembered at most (about 80 bytes each).
pub const SOURCES: usize = 65_536;

/// A seed for path coins: they need to differ between nodes and runs, not
/// to be secret.
fn seed(id: NodeId) -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    id.0 ^ nanos ^ u64::from(std::process::id()).rotate_left(32)
}

impl Node {
    /// Opens the store; `membership` is the first view (see
    /// `members::initial`).
    pub fn new(
        cfg: Resolved,
        gossip: Option<Gossip>,
        membership: Membership,
        host: crate::startup::HostReport,
    ) -> Result<Arc<Node>, StartError> {
        let c: &crate::AgentConfig = &cfg;
        let mut metrics = Metrics::default();
        host.record(&mut metrics, c.labels.len());
        let metrics = Arc::new(metrics);
        let store = Store::open(&c.data_dir, cfg.store_budget)?;
        let id = NodeId::from_name(&c.name);
        let tls = match c.tls.files() {
            Some(files) => Some(crate::tls::PeerTls::new(files)?),
            None => None,
        };
        let tls_client = match &tls {
            Some(t) => Some(t.client_config()?),
            None => None,
        };
        let peer_client = PeerClient::new(
            c.timeouts.clone(),
            c.peer_inflight,
            cfg.token.clone(),
            tls_client,
            metrics.clone(),
        );
        let registries = Arc::new(Registries::new(
            &c.mirror.registries,
            c.mirror.default_registry.as_deref(),
            c.mirror.credentials_file.as_deref(),
        )?);
        let policy = crate::origin::policy_for(c).map_err(StartError::Origins)?;
        let origin = Origin::new(
            c.origin_concurrency,
            metrics.clone(),
            registries,
            Arc::new(policy),
            c.ca_file.as_deref(),
        )?;
        Ok(Arc::new(Node {
            id,
            membership: ArcSwap::from_pointee(membership),
            gossip,
            draining: AtomicBool::new(false),
            tasks: tokio_util::task::TaskTracker::new(),
            stopping: tokio_util::sync::CancellationToken::new(),
            host,
            store,
            flights: Mutex::new(HashMap::new()),
            peer_client,
            tls,
            origin,
            metrics,
            sources: Mutex::new(LruCache::new(SOURCES)),
            relay_plans: Mutex::new(LruCache::new(RELAY_PLANS)),
            rng: Mutex::new(StdRng::seed_from_u64(seed(id))),
            cfg,
        }))
    }

    /// Spawns `f` as one of this node's tasks.
    pub fn spawn(&self, f: impl Future<Output = ()> + Send + 'static) {
        self.tasks.spawn(f);
    }

    /// Spawns a background loop that ends when the agent stops.
    pub fn spawn_loop(&self, f: impl Future<Output = ()> + Send + 'static) {
        let stopping = self.stopping.clone();
        self.tasks.spawn(async move {
            tokio::select! {
                _ = stopping.cancelled() => {}
                _ = f => {}
            }
        });
    }

    /// Runs `f` with this node's RNG (path coins).
    pub fn with_rng<T>(&self, f: impl FnOnce(&mut StdRng) -> T) -> T {
        let mut rng = self.rng.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut rng)
    }

    /// This node's path to stripe `key` in view `m` (hops and fallbacks),
    /// with this node's coins.
    pub fn path_to(&self, m: &Membership, key: shoal_placement::Key) -> shoal_placement::Path {
        self.with_rng(|rng| m.view.path(self.id, key, rng))
    }

    /// The piece size a flight for `stripe` is fetched in through rack
    /// relays, or `None` to fetch it whole along the path: relays are off
    /// (`piece_size = 0`), this node is one of the stripe's first hops or
    /// owners (its [`shoal_placement::View::hop_set`], which serve the
    /// relays), or its rack is unlabelled or too small.
    pub fn piece_size_for(&self, stripe: &crate::proto::StripeRef) -> Option<u64> {
        if self.cfg.piece_size == 0 || stripe.is_empty() {
            return None;
        }
        let m = self.membership.load();
        let key = stripe.key();
        if !m.view.has_rack_relays(self.id) || m.view.hop_set(key).contains(&self.id) {
            return None;
        }
        Some(self.cfg.piece_size.min(stripe.len()))
    }

    /// How this node's rack shares the relaying of `stripe`'s object in
    /// pieces of `piece_size` bytes, in membership `m`
    /// ([`View::relay_plan`]). Made once per object and membership: it
    /// weighs every stripe of the object.
    pub fn relay_plan(
        &self,
        m: &Arc<Membership>,
        stripe: &crate::proto::StripeRef,
        piece_size: u64,
    ) -> Arc<RelayPlan> {
        let slot = (stripe.object_key(), stripe.object.size);
        let lock = || self.relay_plans.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((made_in, plan)) = lock().get(&slot)
            && Arc::ptr_eq(made_in, m)
        {
            return plan.clone();
        }
        let plan = Arc::new(m.view.relay_plan(
            self.id,
            slot.0,
            &stripe.object_stripes(),
            stripe.pieces_in_object(piece_size),
        ));
        lock().insert(slot, (m.clone(), plan.clone()));
        plan
    }

    /// The flights map, locked.
    pub fn flights(&self) -> std::sync::MutexGuard<'_, HashMap<FlightKey, Arc<Flight>>> {
        self.flights.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A flight for stripe `key` in progress here (along the path or
    /// through rack relays), if any.
    pub fn flight_in_progress(&self, key: &EntryKey) -> Option<Arc<Flight>> {
        let flights = self.flights();
        [false, true]
            .iter()
            .find_map(|&pieced| flights.get(&(*key, pieced)).filter(|f| !f.failed()))
            .cloned()
    }

    /// Remembers that stripe `key` came from `peer`.
    pub fn record_source(&self, key: EntryKey, peer: SocketAddr) {
        let mut s = self.sources.lock().unwrap_or_else(|p| p.into_inner());
        s.insert(key, peer);
    }

    /// The peer stripe `key` came from, if it came from one recently.
    pub fn source_of(&self, key: &EntryKey) -> Option<SocketAddr> {
        let mut s = self.sources.lock().unwrap_or_else(|p| p.into_inner());
        s.get(key).copied()
    }

    /// The membership roster: gossip's own view with live states, or
    /// `None` in static mode (the roster peers pull, and `shoal status`).
    pub async fn roster(&self) -> Option<Vec<shoal_membership::Record>> {
        self.gossip.as_ref()?.snapshot().await.ok()
    }

    /// Refreshes the store gauges.
    pub fn refresh_store_metrics(&self) {
        let s = self.store.stats();
        self.metrics.store_bytes.set(s.committed as i64);
        self.metrics.store_evictions.set(s.evictions as i64);
    }
}
