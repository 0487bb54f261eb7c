//! How the timed model treats nodes that vanish. shoal: until the fleet
//! detects a death (a delay drawn from the membership measurements), a
//! path may still name the dead node; the first attempt on it costs one
//! connect timeout and opens that client's breaker, so later attempts
//! skip it; after detection placement routes around it. The DHT baseline:
//! a dead node's provider records live on for their TTL, and each attempt
//! on one costs a dial timeout.

use serde::Serialize;

/// Failure handling settings.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Failures {
    /// shoal's connect timeout for a peer that does not answer, ms. The
    /// agent derives it from the fleet's round trips (issue 5: about
    /// 50 ms on a LAN).
    pub connect_timeout_ms: f64,
    /// Detection delay, drawn uniformly between these, seconds. From the
    /// 8-agent kill -9 measurements (every survivor declared the dead
    /// node down 2.1 to 2.95 s after the kill).
    pub detect_s: (f64, f64),
    /// The DHT baseline's dial timeout per dead provider, seconds
    /// (Spegel: 30).
    pub dht_dial_timeout_s: f64,
    /// How long a dead node's provider records live, seconds (10 minutes).
    pub dht_ttl_s: f64,
}

impl Default for Failures {
    fn default() -> Self {
        Failures {
            connect_timeout_ms: 50.0,
            detect_s: (2.1, 2.95),
            dht_dial_timeout_s: 30.0,
            dht_ttl_s: 600.0,
        }
    }
}

/// Who joins, who is warm, who vanishes, and when clients start.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Plan {
    /// Nodes `0..members` are members from the start; the others join
    /// when their client starts.
    pub members: usize,
    /// Nodes `0..warm` hold the whole object at time zero.
    pub warm: usize,
    /// Nodes that vanish at time zero, unannounced.
    pub vanish: Vec<u32>,
    /// `(node, start)`: who pulls the object, from when (seconds).
    pub clients: Vec<(u32, f64)>,
}

impl Plan {
    /// Every one of `nodes` nodes pulls at time zero, cold.
    pub fn rollout(nodes: usize) -> Plan {
        Plan {
            members: nodes,
            warm: 0,
            vanish: Vec::new(),
            clients: (0..nodes as u32).map(|n| (n, 0.0)).collect(),
        }
    }
}
