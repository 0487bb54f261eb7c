//! An object whose bytes did not match its digest. Every stripe passed
//! its own checksum, so the bad bytes were stored as fetched: some origin
//! fetch got the wrong content. The reader's response is already cut off;
//! here the node drops the stripes everywhere they may be (its own store,
//! the peers that sent them, every hop and stand-in of their paths),
//! records who sent them, and reads the object again, which now goes back
//! to the origin. If the origin still sends the wrong bytes, the second
//! check catches that too, and the copies are dropped again.

use crate::endpoints::purge::{self, purge};
use crate::node::Node;
use crate::proto::{ObjectSpec, StripeRef};
use std::collections::BTreeSet;
use std::sync::Arc;

/// Drops the stripes of `spec` wherever they may be stored and, if
/// `refetch`, reads the object again in the background.
pub(super) async fn recover(node: &Arc<Node>, spec: &ObjectSpec, refetch: bool) {
    node.metrics.digest_mismatches.inc();
    let m = node.membership.load();
    let mut senders = BTreeSet::new();
    let mut holders = BTreeSet::new();
    let mut stripes = Vec::new();
    for index in 0..spec.size.div_ceil(node.cfg.stripe_size) {
        let stripe = StripeRef {
            object: spec.clone(),
            stripe_size: node.cfg.stripe_size,
            index,
        };
        let key = stripe.entry_key();
        if let Some(peer) = node.source_of(&key) {
            senders.insert(peer);
        }
        purge(node, key).await;
        let path = node.path_to(&m, stripe.key());
        for id in path.hops().iter().chain(path.fallbacks()) {
            if let Some(&addr) = m.addrs.get(id).filter(|_| *id != node.id) {
                holders.insert(addr);
            }
        }
        stripes.push(stripe);
    }
    holders.extend(senders.iter().copied());
    tracing::error!(
        url = %spec.url,
        digest = spec.digest.as_deref().unwrap_or(""),
        sent_by = ?senders,
        "the object's bytes do not match its digest; dropping its stripes here and on {} peers{}",
        holders.len(),
        if refetch { ", then reading it again from the origin" } else { "" }
    );
    for addr in holders {
        for stripe in &stripes {
            if let Err(e) = purge::send(&node.peer_client, addr, stripe).await {
                tracing::debug!(peer = %addr, "purge failed: {e}");
            }
        }
    }
    if refetch {
        node.spawn(read_again(node.clone(), spec.clone()));
    }
}

/// Reads the whole object once more (checked against its digest, without
/// a further refetch), so the fleet holds good copies before the client
/// retries.
async fn read_again(node: Arc<Node>, spec: ObjectSpec) {
    let url = spec.url.clone();
    let mut read = match super::open_inner(&node, spec, None, super::OnMismatch::Purge) {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(%url, "refetch after a digest mismatch could not start: {e}");
            return;
        }
    };
    while let Some(chunk) = read.body.recv().await {
        if let Err(e) = chunk {
            tracing::error!(%url, "refetch after a digest mismatch failed: {e}");
            return;
        }
    }
    tracing::info!(%url, "refetched after a digest mismatch; the new copies match the digest");
}
