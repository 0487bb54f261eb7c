//! The agent's Prometheus metrics, all prefixed `shoal_`.

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Where served bytes came from.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
pub enum Source {
    /// This node's store.
    Store,
    /// A peer outside this node's rack (fetched or joined in flight).
    Peer,
    /// A peer in this node's rack (same full label list).
    Rack,
    /// The origin.
    Origin,
}

/// Label set for bytes served.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceLabels {
    /// The source.
    pub source: Source,
}

/// Label set for peer failures.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FailureLabels {
    /// `connect`, `connect_timeout`, `timeout`, `stall`, `corrupt`, `status`, `broken`,
    /// `breaker_open`.
    pub kind: String,
}

/// Label set for per-peer gauges.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PeerLabels {
    /// The peer's node id.
    pub peer: String,
}

/// What the mirror decided about a client's access to private content.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
pub enum AccessResult {
    /// The registry serves it to anyone.
    Anonymous,
    /// The registry accepts the client's credentials for it.
    Granted,
    /// Not public, and the client sent no credentials: a 401 challenge.
    Challenged,
    /// The registry refuses the client's credentials: a 403.
    Denied,
    /// The registry has nothing at that URL for this client.
    Missing,
    /// The registry could not be asked and no verdict was kept.
    Unavailable,
}

/// Label set for mirror access checks.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AccessLabels {
    /// The outcome.
    pub result: AccessResult,
}

/// Label set for per-port metrics: `peer`, `api` or `mirror`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PortLabels {
    /// Which of the agent's servers.
    pub port: String,
}

/// Every metric the agent exports.
pub struct Metrics {
    registry: Registry,
    /// Bytes of stripes delivered to callers, by where this node got them.
    pub served_bytes: Family<SourceLabels, Counter>,
    /// Time to fill one stripe into this node (store hits excluded).
    pub fetch_seconds: Histogram,
    /// Requests that joined a fetch already in flight here.
    pub singleflight_joins: Counter,
    /// Bytes of pieces this node pulled along its own path for its rack:
    /// as the relay ranked first, or after every relay before it failed.
    pub rack_relay_bytes: Counter,
    /// Requests sent to origins.
    pub origin_requests: Counter,
    /// Origin requests refused by the allow-list or the address rules
    /// (the URL, an address a name resolved to, or a redirect).
    pub origin_refused: Counter,
    /// Bytes received from origins.
    pub origin_bytes: Counter,
    /// Mirror requests by what the access check decided.
    pub mirror_access: Family<AccessLabels, Counter>,
    /// Failed peer attempts, by kind.
    pub peer_failures: Family<FailureLabels, Counter>,
    /// 1 while a peer's breaker is open (or half-open), else 0.
    pub breaker_open: Family<PeerLabels, Gauge>,
    /// Bytes admitted to the store.
    pub store_bytes: Gauge,
    /// Stripes evicted from the store.
    pub store_evictions: Gauge,
    /// Requests refused with 503 because inbound capacity was full.
    pub inbound_rejected: Counter,
    /// Whole objects whose bytes did not match their digest.
    pub digest_mismatches: Counter,
    /// Connections open now, by port.
    pub connections_open: Family<PortLabels, Gauge>,
    /// Connections refused with 503 because the port held its maximum.
    pub connections_refused: Family<PortLabels, Counter>,
    /// 1 when containerd reads the hosts files this agent wrote, 0 when it
    /// does not or cannot be told (no metric unless the agent manages
    /// them).
    pub containerd_configured: Gauge,
    /// How many topology labels this node runs with.
    pub topology_labels: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("shoal");
        let m = Metrics {
            served_bytes: Family::default(),
            fetch_seconds: Histogram::new(exponential_buckets(0.001, 2.0, 18)),
            singleflight_joins: Counter::default(),
            rack_relay_bytes: Counter::default(),
            origin_requests: Counter::default(),
            origin_refused: Counter::default(),
            origin_bytes: Counter::default(),
            mirror_access: Family::default(),
            peer_failures: Family::default(),
            breaker_open: Family::default(),
            store_bytes: Gauge::default(),
            store_evictions: Gauge::default(),
            inbound_rejected: Counter::default(),
            digest_mismatches: Counter::default(),
            connections_open: Family::default(),
            connections_refused: Family::default(),
            containerd_configured: Gauge::default(),
            topology_labels: Gauge::default(),
            registry: Registry::default(),
        };
        registry.register(
            "served_bytes",
            "Stripe bytes served to callers, by source",
            m.served_bytes.clone(),
        );
        registry.register(
            "stripe_fetch_seconds",
            "Time to fill a stripe on this node",
            m.fetch_seconds.clone(),
        );
        registry.register(
            "singleflight_joins",
            "Requests that joined an in-flight fetch",
            m.singleflight_joins.clone(),
        );
        registry.register(
            "rack_relay_bytes",
            "Bytes of pieces pulled along this node's path for its rack (as relay)",
            m.rack_relay_bytes.clone(),
        );
        registry.register(
            "origin_requests",
            "Requests to origins",
            m.origin_requests.clone(),
        );
        registry.register(
            "origin_refused",
            "Origin requests refused: a URL off the allow-list, an address no origin may have, or such a redirect",
            m.origin_refused.clone(),
        );
        registry.register(
            "mirror_access",
            "Mirror requests by the access check's result (trusted clients are not counted)",
            m.mirror_access.clone(),
        );
        registry.register(
            "origin_bytes",
            "Bytes received from origins",
            m.origin_bytes.clone(),
        );
        registry.register(
            "peer_failures",
            "Failed peer attempts by kind",
            m.peer_failures.clone(),
        );
        registry.register(
            "breaker_open",
            "1 while a peer's circuit breaker is open",
            m.breaker_open.clone(),
        );
        registry.register(
            "digest_mismatches",
            "Whole objects whose bytes did not match their digest (purged and refetched)",
            m.digest_mismatches.clone(),
        );
        registry.register(
            "connections_open",
            "Connections open now, by port",
            m.connections_open.clone(),
        );
        registry.register(
            "connections_refused",
            "Connections refused with 503 because the port held its maximum",
            m.connections_refused.clone(),
        );
        registry.register(
            "store_bytes",
            "Bytes admitted to the store",
            m.store_bytes.clone(),
        );
        registry.register(
            "store_evictions",
            "Stripes evicted from the store",
            m.store_evictions.clone(),
        );
        registry.register(
            "inbound_rejected",
            "Inbound requests refused because capacity was full",
            m.inbound_rejected.clone(),
        );
        registry.register(
            "topology_labels",
            "Topology labels this node runs with (0 when none were set or found)",
            m.topology_labels.clone(),
        );
        Metrics { registry, ..m }
    }
}

impl Metrics {
    /// Registers a metric that exists only on some nodes (such as the
    /// containerd check's, on nodes that manage containerd).
    pub fn register(
        &mut self,
        name: &str,
        help: &str,
        metric: impl prometheus_client::registry::Metric,
    ) {
        self.registry.register(name, help, metric);
    }

    /// Counts `n` bytes served from `source`.
    pub fn served(&self, source: Source, n: u64) {
        self.served_bytes
            .get_or_create(&SourceLabels { source })
            .inc_by(n);
    }

    /// Counts one mirror access check's result.
    pub fn mirror_access(&self, result: AccessResult) {
        self.mirror_access
            .get_or_create(&AccessLabels { result })
            .inc();
    }

    /// Counts one failed peer attempt.
    pub fn peer_failure(&self, kind: &str) {
        self.peer_failures
            .get_or_create(&FailureLabels { kind: kind.into() })
            .inc();
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}
