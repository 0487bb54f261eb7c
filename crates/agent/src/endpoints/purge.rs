//! `GET /peer/v1/purge?<StripeRef>`: "drop your copy of this stripe".
//!
//! A copy can be whole and still wrong: stored as fetched from an origin
//! that sent the wrong bytes. Only the node that checks the whole object's
//! digest can tell; it asks every node that may hold a stripe of it to
//! drop the copy, so the next read goes back to the origin. The answer is
//! `removed` or `absent`.

use super::{Ask, Endpoint, Peers};
use crate::node::Node;
use crate::peer::{PeerClient, PeerError};
use crate::proto::{StripeRef, Wire};
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::StatusCode;
use shoal_store::EntryKey;
use std::net::SocketAddr;
use std::sync::Arc;

/// Where purge requests go.
pub const PATH: &str = "/peer/v1/purge";

/// This endpoint, for the list.
pub const ENDPOINT: Endpoint = Endpoint {
    path: PATH,
    route: || get(handle),
};

async fn handle(State(p): State<Peers>, Ask(stripe): Ask<StripeRef>) -> Response {
    verdict(purge(&p.node, stripe.entry_key()).await, "absent\n")
}

/// The answer to a request to drop a copy: `removed`, or `kept` saying
/// why not.
pub(super) fn verdict(removed: bool, kept: &'static str) -> Response {
    (StatusCode::OK, if removed { "removed\n" } else { kept }).into_response()
}

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
            "the object this stripe belongs to was found wrong; removed it"
        );
        node.refresh_store_metrics();
    }
    removed
}

/// Asks the peer at `addr` to drop its copy of `stripe`.
pub async fn send(client: &PeerClient, addr: SocketAddr, stripe: &StripeRef) -> Result<(), PeerError> {
    client
        .call(addr, PATH, &stripe.to_query(), crate::timing::HINT)
        .await
        .map(drop)
}
