//! How the timed model treats nodes that vanish. shoal: until the fleet
//! detects a death (a delay drawn from the membership measurements), a
//! path may still name the dead node; the first attempt on it costs one
//! connect timeout and opens that client's breaker, so later attempts
//! skip it; after detection placement routes around it. A transfer the
//! dead node was sending falls silent: its receiver notices after the
//! stall timeout and asks again from the bytes it has. The DHT baseline:
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
    /// How long a receiver waits on a sender that fell silent mid-stripe
    /// before it asks elsewhere, seconds (the agent's stall timeout on a
    /// LAN: its 1.5 s floor for a peer silent on every stream, then a
    /// health probe of twice the 50 ms connect timeout).
    pub stall_s: f64,
    /// The DHT baseline's dial timeout per dead provider, seconds
    /// (Spegel: 30).
    pub dht_dial_timeout_s: f64,
    /// How long a dead node's provider records live, seconds (10 minutes).
    pub dht_ttl_s: f64,
    /// Share of node pairs that cannot reach each other while both are
    /// alive (a partial partition; default 0).
    pub cut_share: f64,
}

impl Default for Failures {
    fn default() -> Self {
        Failures {
            connect_timeout_ms: 50.0,
            detect_s: (2.1, 2.95),
            stall_s: 1.6,
            dht_dial_timeout_s: 30.0,
            dht_ttl_s: 600.0,
            cut_share: 0.0,
        }
    }
}

/// Who joins, who is warm, who vanishes when, and when clients start.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Plan {
    /// Nodes `0..members` are members from the start; the others join
    /// when their client starts.
    pub members: usize,
    /// Nodes `0..warm` hold the whole object at time zero.
    pub warm: usize,
    /// `(node, time)`: nodes that vanish, unannounced, in time order
    /// (seconds). A node that vanishes stops pulling, sending and
    /// answering.
    pub leaves: Vec<(u32, f64)>,
    /// `(node, start)`: who pulls the object, from when (seconds).
    pub clients: Vec<(u32, f64)>,
}

impl Plan {
    /// Every one of `nodes` nodes pulls at time zero, cold.
    pub fn rollout(nodes: usize) -> Plan {
        Plan::partly_warm(nodes, 0)
    }

    /// Nodes `0..warm` hold the object; all the others pull it at time
    /// zero.
    pub fn partly_warm(nodes: usize, warm: usize) -> Plan {
        Plan {
            members: nodes,
            warm,
            leaves: Vec::new(),
            clients: (warm.min(nodes) as u32..nodes as u32)
                .map(|n| (n, 0.0))
                .collect(),
        }
    }
}

/// Whether nodes `a` and `b` cannot reach each other: a fixed draw per
/// pair and seed, the same whichever side asks.
pub fn cut(share: f64, seed: u64, a: u32, b: u32) -> bool {
    if share <= 0.0 || a == b {
        return false;
    }
    let (x, y) = (a.min(b), a.max(b));
    let h = crate::rng::stream(seed ^ (u64::from(x) << 32 | u64::from(y)), 7);
    ((h >> 11) as f64) * (1.0 / (1u64 << 53) as f64) < share
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuts_are_symmetric_and_about_the_share() {
        let n = 300u32;
        let mut cuts = 0;
        for a in 0..n {
            for b in 0..n {
                assert_eq!(cut(0.1, 4, a, b), cut(0.1, 4, b, a));
                cuts += u32::from(cut(0.1, 4, a, b));
            }
        }
        let share = f64::from(cuts) / f64::from(n * (n - 1));
        assert!((0.09..0.11).contains(&share), "{share}");
        assert!(!cut(0.0, 4, 1, 2));
    }
}
