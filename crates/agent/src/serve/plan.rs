//! The order in which a node tries sources for a stripe it must fetch.
//!
//! With hops left: each hop in turn, each followed by a relay through the
//! first fallback (used only if that hop looked unreachable while
//! membership still lists it alive: a non-transitive link). Then the
//! owner's successors as stand-ins, each asked with an empty path so it
//! fetches from the origin itself; a node that finds itself in that list
//! stands in itself. A request from this node's own client ends with the
//! origin, so a pull is never lost to dead peers.
//!
//! With no hops left, this node is the owner or a stand-in: it peeks at its
//! first fallback (the replica the previous owner pushed) and then asks the
//! origin.
//!
//! A relay request (the `relay` flag) tries its first hop only; one that
//! reaches the owner (no hops left) is served as the owner serves any
//! request, so relaying around a link to the owner never costs the origin
//! a second copy.

use crate::proto::StripeRequest;
use shoal_placement::NodeId;

/// One source to try.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Attempt {
    /// Ask a peer.
    Peer {
        /// Who to ask.
        target: NodeId,
        /// The hops it should forward along.
        path: Vec<NodeId>,
        /// Its stand-ins.
        fallbacks: Vec<NodeId>,
        /// Relay mode.
        relay: bool,
        /// Only if cached.
        peek: bool,
        /// Set on a relay attempt: the hop it routes around.
        relay_for: Option<NodeId>,
    },
    /// Fetch from the origin.
    Origin,
}

fn peer(target: NodeId, path: Vec<NodeId>, fallbacks: Vec<NodeId>) -> Attempt {
    Attempt::Peer {
        target,
        path,
        fallbacks,
        relay: false,
        peek: false,
        relay_for: None,
    }
}

/// The attempts for `req` on node `me`, in order.
pub(crate) fn plan(me: NodeId, req: &StripeRequest, local: bool) -> Vec<Attempt> {
    let mut out = Vec::new();
    if req.path.is_empty() {
        if let Some(&f) = req.fallbacks.iter().find(|&&f| f != me) {
            out.push(Attempt::Peer {
                target: f,
                path: Vec::new(),
                fallbacks: Vec::new(),
                relay: false,
                peek: true,
                relay_for: None,
            });
        }
        out.push(Attempt::Origin);
        return out;
    }
    for (k, &hop) in req.path.iter().enumerate() {
        let rest = req.path[k + 1..].to_vec();
        out.push(Attempt::Peer {
            target: hop,
            path: rest.clone(),
            fallbacks: req.fallbacks.clone(),
            relay: req.relay,
            peek: req.copy_only,
            relay_for: None,
        });
        if req.relay {
            return out;
        }
        if let Some(&via) = req.fallbacks.iter().find(|&&f| f != me && f != hop) {
            let mut through = vec![hop];
            through.extend(rest);
            out.push(Attempt::Peer {
                target: via,
                path: through,
                fallbacks: Vec::new(),
                relay: true,
                peek: false,
                relay_for: Some(hop),
            });
        }
    }
    for (k, &f) in req.fallbacks.iter().enumerate() {
        if f == me {
            out.push(Attempt::Origin);
            return out;
        }
        out.push(peer(f, Vec::new(), req.fallbacks[k + 1..].to_vec()));
    }
    if local {
        out.push(Attempt::Origin);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{ObjectSpec, StripeRef};

    fn req(path: &[u64], fallbacks: &[u64], relay: bool) -> StripeRequest {
        StripeRequest {
            stripe: StripeRef {
                object: ObjectSpec {
                    url: "http://o/x".into(),
                    size: 10,
                    validator: None,
                    digest: None,
                },
                stripe_size: 1 << 20,
                index: 0,
            },
            path: path.iter().map(|&i| NodeId(i)).collect(),
            fallbacks: fallbacks.iter().map(|&i| NodeId(i)).collect(),
            from: 0,
            to: None,
            ttl_ms: 1000,
            cached: false,
            relay,
            rack: false,
            rank: 3,
            copy_only: false,
        }
    }

    fn targets(p: &[Attempt]) -> Vec<String> {
        p.iter()
            .map(|a| match a {
                Attempt::Origin => "origin".into(),
                Attempt::Peer {
                    target,
                    relay_for: Some(h),
                    ..
                } => format!("{}via{}", h.0, target.0),
                Attempt::Peer {
                    target, peek: true, ..
                } => format!("peek{}", target.0),
                Attempt::Peer { target, .. } => target.0.to_string(),
            })
            .collect()
    }

    #[test]
    fn forwards_then_relays_then_stands_in() {
        let p = plan(NodeId(9), &req(&[1, 2], &[5, 6], false), false);
        assert_eq!(targets(&p), ["1", "1via5", "2", "2via5", "5", "6"]);
        // The owner's stand-ins carry the successors after them.
        assert!(
            matches!(&p[4], Attempt::Peer { path, fallbacks, .. } if path.is_empty() && fallbacks == &[NodeId(6)])
        );
        // A local request ends at the origin.
        let p = plan(NodeId(9), &req(&[1], &[5], false), true);
        assert_eq!(targets(&p), ["1", "1via5", "5", "origin"]);
    }

    #[test]
    fn a_node_in_the_fallbacks_stands_in_itself() {
        let p = plan(NodeId(5), &req(&[1], &[4, 5, 6], false), false);
        assert_eq!(targets(&p), ["1", "1via4", "4", "origin"]);
    }

    #[test]
    fn the_owner_peeks_then_fetches_and_relays_go_one_hop() {
        assert_eq!(
            targets(&plan(NodeId(1), &req(&[], &[1, 2], false), false)),
            ["peek2", "origin"]
        );
        assert_eq!(
            targets(&plan(NodeId(1), &req(&[3, 4], &[2], true), false)),
            ["3"]
        );
        // A relay that reaches the owner: the owner fetches, as for anyone.
        assert_eq!(
            targets(&plan(NodeId(1), &req(&[], &[], true), false)),
            ["origin"]
        );
        // A replica pull asks its source only for the copy it holds.
        let mut pull = req(&[3], &[], true);
        pull.copy_only = true;
        assert_eq!(targets(&plan(NodeId(1), &pull, false)), ["peek3"]);
    }
}
