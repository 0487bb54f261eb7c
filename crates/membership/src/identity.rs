//! What a member advertises about itself, and how two claims to one name
//! are settled.

use foca::Identity;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;

/// A member's identity as gossip carries it: small enough that a packet
/// holds many of them.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Peer {
    /// The node's name; placement derives its id from it, and it is the
    /// key foca settles conflicts on (one live identity per name).
    pub name: String,
    /// Where its peer protocol (TCP) listens.
    pub data: SocketAddr,
    /// Where its gossip (UDP) listens.
    pub gossip: SocketAddr,
    /// Topology labels, widest first (zone, row, rack).
    pub labels: Vec<String>,
    /// Grows with every start of the process (and every rejoin), so a
    /// restarted node replaces its old self.
    pub generation: u64,
}

impl Identity for Peer {
    type Addr = String;

    /// Declared down while alive (a long pause, a partition that healed):
    /// come back as the next generation, which wins over the old one.
    fn renew(&self) -> Option<Self> {
        Some(Peer {
            generation: self.generation + 1,
            ..self.clone()
        })
    }

    fn addr(&self) -> String {
        self.name.clone()
    }

    /// A strict order, so every node picks the same winner: the newer
    /// generation, then the fields as tie-breaks.
    fn win_addr_conflict(&self, other: &Self) -> bool {
        (self.generation, self.data, self.gossip, &self.labels)
            > (other.generation, other.data, other.gossip, &other.labels)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(generation: u64) -> Peer {
        Peer {
            name: "n1".into(),
            data: "127.0.0.1:1".parse().unwrap_or_else(|_| unreachable!()),
            gossip: "127.0.0.1:2".parse().unwrap_or_else(|_| unreachable!()),
            labels: vec!["r1".into()],
            generation,
        }
    }

    #[test]
    fn the_newer_generation_wins_and_renewing_wins() {
        let (old, new) = (peer(5), peer(6));
        assert!(new.win_addr_conflict(&old));
        assert!(!old.win_addr_conflict(&new));
        assert!(!old.win_addr_conflict(&old));
        let renewed = old.renew().unwrap_or_else(|| unreachable!());
        assert!(renewed.win_addr_conflict(&old));
        assert_eq!(renewed.addr(), old.addr());
    }
}
