//! What the mirror does for a manifest it has never seen while the
//! registry cannot tell it the size: ask the nodes that own the
//! manifest's stripes how long their stored copies are. The manifest's
//! bytes then come through the mesh as usual and are checked against the
//! digest, so a wrong answer costs a failed pull, never a wrong one.

use crate::endpoints::stat;
use crate::node::Node;
use crate::proto::{ObjectSpec, StripeRef};
use shoal_oci::manifest::MAX_MANIFEST;
use std::sync::Arc;

/// The size of the object `spec` names (its `size` is ignored), summed
/// from the stored lengths of its stripes on this node or their owners
/// and stand-ins. `None` if some stripe is nowhere to be found, or the
/// answers cannot be a manifest's (a stripe longer than a stripe, a total
/// past [`MAX_MANIFEST`]). When every stripe so far was whole and the next
/// is nowhere, the total is a candidate: the object may end on a stripe
/// boundary, and the digest check of the bytes fetched with that size
/// settles it.
pub async fn size_from_mesh(node: &Arc<Node>, spec: &ObjectSpec) -> Option<u64> {
    let ss = node.cfg.stripe_size;
    let mut total = 0u64;
    for index in 0.. {
        let mut probe = spec.clone();
        // Any size that makes `index` a whole stripe: identity by digest
        // does not depend on it.
        probe.size = (index + 1) * ss;
        let Some(len) = stripe_len(node, probe, index).await else {
            return (index > 0).then_some(total);
        };
        if len > ss {
            tracing::warn!(len, "a peer claims a stripe longer than the stripe size");
            return None;
        }
        total += len;
        if total > MAX_MANIFEST {
            return None;
        }
        if len < ss {
            return Some(total);
        }
    }
    None
}

async fn stripe_len(node: &Arc<Node>, object: ObjectSpec, index: u64) -> Option<u64> {
    let stripe = StripeRef {
        object,
        stripe_size: node.cfg.stripe_size,
        index,
    };
    let own = stat::stored_len(&node.store, stripe.entry_key()).await;
    if own.is_some() {
        return own;
    }
    let m = node.membership.load();
    let path = node.path_to(&m, stripe.key());
    // The owner first, then its stand-ins, then the nearer hops.
    let hops = path.hops();
    let mut candidates: Vec<_> = hops.last().copied().into_iter().collect();
    candidates.extend(path.fallbacks());
    candidates.extend(hops.iter().rev().skip(1));
    for id in candidates {
        if id == node.id {
            continue;
        }
        let Some(&addr) = m.addrs.get(&id) else {
            continue;
        };
        match stat::ask(&node.peer_client, addr, &stripe, crate::timing::HINT).await {
            Ok(Some(len)) => return Some(len),
            Ok(None) => {}
            Err(e) => tracing::debug!(peer = %addr, "stat failed: {e}"),
        }
    }
    None
}
