//! The agent's settings: the defaults (`config/defaults.toml`, the one
//! place each is stated), a TOML file, then environment variables and
//! flags, merged by one rule (`config/load.rs`).

pub mod containerd;
pub mod kubernetes;
mod load;
pub mod mirror;

pub use load::{DEFAULTS, defaults, insert, lookup, merge};

use containerd::ContainerdConfig;
use kubernetes::KubernetesConfig;
use mirror::MirrorConfig;
use serde::{Deserialize, Serialize};
use shoal_membership::GossipConfig;
use shoal_store::Budget;
use std::net::SocketAddr;
use std::path::PathBuf;

/// A statically configured peer (until gossip membership replaces it).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PeerConfig {
    /// The peer's node name.
    pub name: String,
    /// Its peer-protocol address.
    pub addr: SocketAddr,
    /// Its topology labels, widest first.
    #[serde(default)]
    pub labels: Vec<String>,
}

impl PeerConfig {
    /// A peer given as `NAME=ADDR[/label/label...]` on the command line.
    pub fn parse(s: &str) -> Result<PeerConfig, String> {
        let bad = |why: &str| format!("peer {s:?}: {why}");
        let (name, rest) = s.split_once('=').ok_or_else(|| bad("expected NAME=ADDR"))?;
        let mut parts = rest.split('/');
        let addr = parts
            .next()
            .unwrap_or("")
            .parse()
            .map_err(|_| bad("bad address"))?;
        if name.is_empty() {
            return Err(bad("empty name"));
        }
        Ok(PeerConfig {
            name: name.to_owned(),
            addr,
            labels: parts.map(str::to_owned).collect(),
        })
    }
}

/// Peer timeout bounds, in milliseconds. The adaptive values computed from
/// each peer's observed round trip always stay between floor and ceiling.
/// A peer not heard from yet gets the values of all peers' round trips
/// smoothed together, and the ceilings only before any peer answered.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Timeouts {
    /// Connect timeout floor.
    pub connect_floor_ms: u64,
    /// Connect timeout ceiling.
    pub connect_ceiling_ms: u64,
    /// First-byte (response header) timeout floor.
    pub first_byte_floor_ms: u64,
    /// First-byte timeout ceiling.
    pub first_byte_ceiling_ms: u64,
    /// Longest silence inside a response before it counts as stalled
    /// (floor).
    pub stall_floor_ms: u64,
    /// Stall timeout ceiling.
    pub stall_ceiling_ms: u64,
    /// How long a stripe request may take end to end, all retries
    /// included. It travels with the request.
    pub deadline_ms: u64,
    /// Consecutive failures that open a peer's breaker (one timeout opens
    /// it at once).
    pub breaker_failures: u32,
    /// How long an open breaker waits before a half-open probe, doubling
    /// on each failed probe.
    pub breaker_cooldown_ms: u64,
}

impl Default for Timeouts {
    /// The `[timeouts]` of the defaults.
    fn default() -> Self {
        AgentConfig::default().timeouts
    }
}

/// Everything an agent needs to run.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    /// This node's name (unset: the host name). Its id is derived from it.
    #[serde(default = "default_name")]
    pub name: String,
    /// Peer protocol, metrics and health.
    pub listen: SocketAddr,
    /// The address peers reach this node at (unset: `listen`).
    pub advertise: Option<SocketAddr>,
    /// The IP peers reach this node at, with `listen`'s port: what a pod
    /// learns from the downward API (`status.hostIP`, IPv4 or IPv6).
    /// `advertise` wins when both are set.
    pub advertise_ip: Option<std::net::IpAddr>,
    /// The local API for `shoal get`; keep it on
    /// loopback: it needs no token.
    pub api_listen: SocketAddr,
    /// Where stripes are kept.
    pub data_dir: PathBuf,
    /// Store budget: bytes (`50GiB`) or a share of the data dir's
    /// filesystem (`10%`).
    #[serde(deserialize_with = "de::budget")]
    pub store_budget: Budget,
    /// Stripe size, the same on every node.
    #[serde(deserialize_with = "de::size")]
    pub stripe_size: u64,
    /// Piece size for rack relays (`0` turns them off): inside a rack of
    /// at least four live members, each piece of a stripe is pulled into
    /// the rack once, by the member ranked first for it, and the others
    /// pull it from that member (see `crate::serve::pieced`). At least
    /// 256KiB; a piece larger than a stripe is the whole stripe.
    #[serde(deserialize_with = "de::size")]
    pub piece_size: u64,
    /// Copies of a stripe fetched from the origin (2: the owner pushes one
    /// to its first successor).
    pub min_copies: usize,
    /// Concurrent origin requests.
    pub origin_concurrency: usize,
    /// Extra CA certificates (PEM) trusted for origins and registries,
    /// besides the system's roots.
    pub ca_file: Option<PathBuf>,
    /// Concurrent inbound stripe requests before a fast 503.
    pub inbound_limit: usize,
    /// Concurrent requests to one peer.
    pub peer_inflight: usize,
    /// Bytes of an object a read has in flight at once (whole stripes, at
    /// least one): the stripe it streams and those it fetches ahead.
    #[serde(deserialize_with = "de::size")]
    pub readahead: u64,
    /// Cluster token peers must present. Unset means open (a warning says
    /// so at startup).
    pub token: Option<String>,
    /// Read the token from this file instead (setting both is an error).
    pub token_file: Option<PathBuf>,
    /// This node's topology labels, widest first.
    pub labels: Vec<String>,
    /// Static peers. When any are listed, membership is this fixed list
    /// and gossip is off (for small fixed setups and tests that pin
    /// addresses); otherwise members find each other by gossip.
    pub peers: Vec<PeerConfig>,
    /// Where to ask for the roster when joining: `IP:PORT` or `NAME:PORT`
    /// of peer-protocol addresses, re-resolved on every attempt (a
    /// Kubernetes headless Service name works). Default: none, so a node
    /// starts alone until others join it.
    pub seeds: Vec<String>,
    /// Gossip (UDP) address (unset: the same IP and port as `listen`).
    pub gossip_listen: Option<SocketAddr>,
    /// The gossip address peers reach this node at (unset: `advertise`'s
    /// IP with `gossip_listen`'s port).
    pub gossip_advertise: Option<SocketAddr>,
    /// Gossip timers (see `GossipConfig`, which states their defaults).
    #[serde(default)]
    pub gossip: GossipConfig,
    /// On SIGTERM or SIGINT, how long transfers in progress may take to
    /// finish after the node has announced its leave.
    pub drain_ms: u64,
    /// Connections each port (peer, API, mirror) holds open at once; a
    /// connection past that gets a 503 and is closed.
    pub max_connections: usize,
    /// How long a client has to send a request's headers; also how long
    /// an idle keep-alive connection stays open.
    pub header_read_timeout_ms: u64,
    /// Peer timeout bounds, the request deadline and breakers.
    pub timeouts: Timeouts,
    /// The OCI mirror port and the registries it mirrors.
    pub mirror: MirrorConfig,
    /// containerd's hosts files, written and checked at start.
    pub containerd: ContainerdConfig,
    /// Topology labels from this node's Kubernetes Node object.
    pub kubernetes: KubernetesConfig,
    /// Which origins generic fetches may read.
    pub origins: OriginsConfig,
    /// Mutual TLS between peers.
    #[serde(default)]
    pub tls: TlsConfig,
}

/// The `[tls]` table: mutual TLS on the peer port and for every request
/// to a peer. Set all three files or none; they are read again when they
/// change (see `crate::tls`).
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM bundle of the cluster CA that signs every node's certificate.
    pub ca_file: Option<PathBuf>,
    /// PEM chain of this node's certificate.
    pub cert_file: Option<PathBuf>,
    /// PEM private key of that certificate.
    pub key_file: Option<PathBuf>,
}

impl TlsConfig {
    /// The three files, if TLS is on.
    pub fn files(&self) -> Option<crate::tls::TlsFiles> {
        match (&self.ca_file, &self.cert_file, &self.key_file) {
            (Some(ca), Some(cert), Some(key)) => Some(crate::tls::TlsFiles {
                ca: ca.clone(),
                cert: cert.clone(),
                key: key.clone(),
            }),
            _ => None,
        }
    }
}

/// The `[origins]` table: the allow-list of generic fetches
/// (`/v1/object`, `shoal get`, and a peer's request for a stripe this
/// node owns). Mirrored registries are always allowed under their `/v2/`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct OriginsConfig {
    /// `[SCHEME://]HOST[:PORT][/PATH]` patterns (HOST may be
    /// `*.domain`); empty turns generic fetches off. Naming a host
    /// exactly also lets it be a loopback, link-local or this node's own
    /// address, which is refused otherwise (see `crate::origin::allow`).
    pub allow: Vec<String>,
}

fn default_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "shoal".into())
}

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The file is not valid TOML for these settings.
    #[error("parsing {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A value is out of range.
    #[error("setting {0}: {1}")]
    Invalid(&'static str, String),
}

/// Settings that passed every check, with the token read from its file:
/// what an agent runs with. It is the settings (it dereferences to
/// [`AgentConfig`]); only [`AgentConfig::resolve`] makes one.
#[derive(Clone, Debug)]
pub struct Resolved(AgentConfig);

impl std::ops::Deref for Resolved {
    type Target = AgentConfig;
    fn deref(&self) -> &AgentConfig {
        &self.0
    }
}

impl std::ops::DerefMut for Resolved {
    fn deref_mut(&mut self) -> &mut AgentConfig {
        &mut self.0
    }
}

/// Sizes written as text (`64MiB`, `10%`) or plain numbers of bytes,
/// parsed when the settings are read, so a bad one names its key.
mod de {
    use serde::{Deserialize, Deserializer, de::Error};
    use shoal_store::Budget;

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Text {
        Bytes(u64),
        Text(String),
    }

    pub fn size<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        match Text::deserialize(d)? {
            Text::Bytes(n) => Ok(n),
            Text::Text(s) => shoal_store::parse_size(&s).map_err(D::Error::custom),
        }
    }

    pub fn budget<'de, D: Deserializer<'de>>(d: D) -> Result<Budget, D::Error> {
        match Text::deserialize(d)? {
            Text::Bytes(n) => Ok(Budget::Bytes(n)),
            Text::Text(s) => s.parse().map_err(D::Error::custom),
        }
    }
}

impl AgentConfig {
    /// Where this node's peer protocol is reached.
    pub fn data_addr(&self) -> SocketAddr {
        self.advertise
            .or_else(|| {
                self.advertise_ip
                    .map(|ip| SocketAddr::new(ip, self.listen.port()))
            })
            .unwrap_or(self.listen)
    }

    /// Where gossip binds, and where peers send it.
    pub fn gossip_addrs(&self) -> (SocketAddr, SocketAddr) {
        let bind = self.gossip_listen.unwrap_or(self.listen);
        let advertise = self
            .gossip_advertise
            .unwrap_or_else(|| SocketAddr::new(self.data_addr().ip(), bind.port()));
        (bind, advertise)
    }

    /// Checks every value and reads the token from its file.
    pub fn resolve(mut self) -> Result<Resolved, ConfigError> {
        let inv = |k, m: &str| ConfigError::Invalid(k, m.to_owned());
        if self.name.is_empty() {
            return Err(inv("name", "must not be empty"));
        }
        let (lo, hi) = crate::proto::STRIPE_SIZES;
        if !(lo..=hi).contains(&self.stripe_size) {
            return Err(inv("stripe_size", "must be between 64KiB and 4GiB"));
        }
        if self.readahead < self.stripe_size {
            return Err(inv(
                "readahead",
                "must be at least one stripe, in bytes (for example \"256MiB\")",
            ));
        }
        if self.piece_size != 0 && self.piece_size < crate::proto::CHUNK as u64 {
            return Err(inv(
                "piece_size",
                "must be 0 (no rack relays) or at least 256KiB",
            ));
        }
        for (k, v) in [
            ("min_copies", self.min_copies),
            ("origin_concurrency", self.origin_concurrency),
            ("inbound_limit", self.inbound_limit),
            ("peer_inflight", self.peer_inflight),
            ("max_connections", self.max_connections),
        ] {
            if v == 0 {
                return Err(inv(k, "must be at least 1"));
            }
        }
        let t = &self.tls;
        let set = [&t.ca_file, &t.cert_file, &t.key_file]
            .iter()
            .filter(|f| f.is_some())
            .count();
        if set != 0 && set != 3 {
            return Err(inv(
                "tls",
                "set all of ca_file, cert_file and key_file, or none",
            ));
        }
        if self.header_read_timeout_ms < 100 {
            return Err(inv("header_read_timeout_ms", "must be at least 100"));
        }
        let t = &self.timeouts;
        if t.connect_floor_ms > t.connect_ceiling_ms
            || t.first_byte_floor_ms > t.first_byte_ceiling_ms
            || t.stall_floor_ms > t.stall_ceiling_ms
        {
            return Err(inv("timeouts", "every floor must be at most its ceiling"));
        }
        self.gossip
            .to_foca(1)
            .map_err(|e| inv("gossip", &e.to_string()))?;
        let token = match (&self.token, &self.token_file) {
            // Two sources of one secret: which one wins would depend on
            // where each was set, so neither does.
            (Some(_), Some(_)) => {
                return Err(inv(
                    "token",
                    "both token and token_file are set (in the file, the environment or flags); set one",
                ));
            }
            (Some(t), None) => Some(t.clone()),
            (None, Some(path)) => Some(
                std::fs::read_to_string(path)
                    .map_err(|e| inv("token_file", &format!("{}: {e}", path.display())))?
                    .trim()
                    .to_owned(),
            ),
            (None, None) => None,
        };
        if token.as_deref() == Some("") {
            return Err(inv("token", "must not be empty when set"));
        }
        // From here on `token` is the secret, wherever it came from.
        self.token = token;
        Ok(Resolved(self))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Settings from a file's text, over the defaults.
    fn from_text(text: &str) -> Result<AgentConfig, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("shoal.toml");
        std::fs::write(&file, text).unwrap();
        AgentConfig::from_file(&file)
    }

    #[test]
    fn a_file_overrides_defaults_and_typos_are_errors() {
        let c = from_text(
            r#"
            name = "n1"
            store_budget = "2GiB"
            [[peers]]
            name = "n2"
            addr = "127.0.0.1:9000"
            [timeouts]
            connect_ceiling_ms = 500
            "#,
        )
        .unwrap();
        assert_eq!(c.name, "n1");
        assert_eq!(c.peers.len(), 1);
        assert_eq!(c.timeouts.connect_ceiling_ms, 500);
        assert_eq!(c.timeouts.stall_floor_ms, 1500);
        let r = c.resolve().unwrap();
        assert_eq!(r.store_budget, Budget::Bytes(2 << 30));
        assert_eq!(r.stripe_size, 16 << 20);
        assert!(from_text("nmae = \"x\"").is_err());
    }

    #[test]
    fn an_advertised_ip_takes_the_listen_port() {
        let mut c = AgentConfig {
            advertise_ip: Some("fd00::7".parse().unwrap()),
            ..AgentConfig::default()
        };
        assert_eq!(c.data_addr().to_string(), "[fd00::7]:7420");
        c.advertise = Some("10.0.0.1:9000".parse().unwrap());
        assert_eq!(c.data_addr().to_string(), "10.0.0.1:9000");
    }

    #[test]
    fn bad_values_are_refused() {
        let bad = |f: fn(&mut AgentConfig)| {
            let mut c = AgentConfig::default();
            f(&mut c);
            c.resolve().is_err()
        };
        assert!(bad(|c| c.stripe_size = 1024));
        assert!(bad(|c| c.piece_size = 1024));
        assert!(bad(|c| c.readahead = 4));
        assert!(!bad(|c| c.piece_size = 0));
        assert!(from_text("store_budget = \"lots\"").is_err());
        assert!(from_text("stripe_size = \"1 pint\"").is_err());
        let c = from_text("stripe_size = 1048576\nstore_budget = \"25%\"").unwrap();
        assert_eq!(c.stripe_size, 1 << 20);
        assert_eq!(c.store_budget, Budget::Percent(25.0));
        assert!(bad(|c| c.min_copies = 0));
        assert!(bad(|c| c.token = Some(String::new())));
        assert!(bad(|c| {
            c.token = Some("from-the-file".into());
            c.token_file = Some("/etc/shoal/token".into());
        }));
        assert!(bad(|c| c.timeouts.stall_floor_ms = 99_999));
        assert!(bad(|c| c.gossip.probe_rtt_ms = c.gossip.probe_period_ms));
        assert!(bad(|c| c.tls.cert_file = Some("/etc/shoal/node.pem".into())));
        assert!(!bad(|_| {}));
    }
}
