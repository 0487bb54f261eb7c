//! `GET /peer/v1/suspect?<StripeRef>`: "the copy of this stripe you sent
//! me failed its checksum".
//!
//! A node serving a stored stripe to a peer does not re-hash it on the way:
//! the receiver checks the whole stripe against the checksum in the `END`
//! frame anyway, so a copy that rotted on disk is never admitted anywhere.
//! A receiver whose check fails reports it here and waits for the answer;
//! the sender re-reads its copy and removes it if it no longer matches, so
//! the receiver's retry does not meet it again. A node's own client gets
//! no such check downstream, so local reads of the store still re-hash as
//! they go. The answer is `removed` or `intact`.

use super::{Ask, Endpoint, Peers};
use crate::node::Node;
use crate::peer::PeerClient;
use crate::proto::{StripeRef, Wire};
use axum::extract::State;
use axum::response::Response;
use axum::routing::get;
use shoal_store::EntryKey;
use std::io::Read;
use std::net::SocketAddr;
use std::sync::Arc;

/// Where suspect copies are reported.
pub const PATH: &str = "/peer/v1/suspect";

/// This endpoint, for the list.
pub const ENDPOINT: Endpoint = Endpoint {
    path: PATH,
    route: || get(handle),
};

async fn handle(State(p): State<Peers>, Ask(stripe): Ask<StripeRef>) -> Response {
    super::purge::verdict(recheck(&p.node, stripe.entry_key()).await, "intact\n")
}

/// Re-hashes this node's stored copy of `key` and removes it if it no
/// longer matches the checksum it was admitted with. Returns whether it
/// was removed.
async fn recheck(node: &Arc<Node>, key: EntryKey) -> bool {
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

/// Tells `from` that the copy of `stripe` it sent did not match its own
/// checksum, and waits (briefly) until it has checked its copy.
pub async fn report(client: &PeerClient, from: SocketAddr, stripe: &StripeRef) {
    let sent = client
        .call(from, PATH, &stripe.to_query(), crate::timing::HINT)
        .await;
    if let Err(e) = sent {
        tracing::debug!(peer = %from, "suspect report failed: {e}");
    }
}
