//! Stored copies a peer found wrong.
//!
//! A node serving a stored stripe to a peer does not re-hash it on the way:
//! the receiver checks the whole stripe against the checksum in the `END`
//! frame anyway, so a copy that rotted on disk is never admitted anywhere.
//! A receiver whose check fails tells the sender (`/peer/v1/suspect`) and
//! waits for the answer; the sender re-reads its copy and removes it if it
//! no longer matches, so the receiver's retry does not meet it again. A
//! node's own client gets no such check downstream, so local reads of the
//! store still re-hash as they go.
//!
//! A copy can also be whole and still wrong: stored as fetched from an
//! origin that sent the wrong bytes. Only the node that checks the whole
//! object's digest can tell; it asks every node that may hold a stripe of
//! it to drop the copy (`/peer/v1/purge`), so the next read goes back to
//! the origin.

use crate::node::Node;
use crate::proto::StripeRequest;
use shoal_store::EntryKey;
use std::io::Read;
use std::net::SocketAddr;
use std::sync::Arc;

/// The peer-protocol path of suspect-copy reports.
pub const SUSPECT_PATH: &str = "/peer/v1/suspect";

/// The peer-protocol path of purge requests.
pub const PURGE_PATH: &str = "/peer/v1/purge";

/// Removes this node's stored copy of `key`, if any. Returns whether
/// there was one.
pub async fn purge(node: &Arc<Node>, key: EntryKey) -> bool {
    let store = node.store.clone();
    let removed = tokio::task::spawn_blocking(move || store.remove(&key).unwrap_or(false))
        .await
        .unwrap_or(false);
    if removed {
        tracing::warn!(
            key = hex::encode(key.0),
            "a peer found the object this stripe belongs to wrong; removed it"
        );
        node.refresh_store_metrics();
    }
    removed
}

/// Re-hashes this node's stored copy of `key` and removes it if it no
/// longer matches the checksum it was admitted with. Returns whether it
/// was removed.
pub async fn recheck(node: &Arc<Node>, key: EntryKey) -> bool {
    let store = node.store.clone();
    let removed = tokio::task::spawn_blocking(move || {
        let Ok(Some(lease)) = store.get(&key) else {
            return false;
        };
        let mut hasher = blake3::Hasher::new();
        let mut file = &lease.file;
        let mut buf = vec![0u8; 1 << 20];
        loop {
            match file.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    hasher.update(&buf[..n]);
                }
                Err(_) => break,
            }
        }
        if *hasher.finalize().as_bytes() == lease.checksum.0 {
            return false;
        }
        drop(lease);
        store.remove(&key).unwrap_or(false)
    })
    .await
    .unwrap_or(false);
    if removed {
        tracing::error!(
            key = hex::encode(key.0),
            "a peer found this node's stored stripe corrupt; removed it"
        );
        node.refresh_store_metrics();
    }
    removed
}

/// Tells `from` that the stripe it sent did not match its own checksum,
/// and waits (briefly) until it has checked its copy.
pub async fn report(node: &Arc<Node>, from: SocketAddr, req: &StripeRequest) {
    let mut hint = req.clone();
    hint.path.clear();
    hint.fallbacks.clear();
    hint.from = 0;
    if let Err(e) = node.peer_client.notify(from, SUSPECT_PATH, &hint).await {
        tracing::debug!(peer = %from, "suspect report failed: {e}");
    }
}
