//! `GET /peer/v1/stat?<StripeRef>`: how long this node's stored copy of a
//! stripe is, in the `x-shoal-stripe-len` header of an empty 200, without
//! sending it; 404 if it holds none. The mirror learns a manifest's size
//! this way while the registry is down.

use super::{Ask, Endpoint, Peers};
use crate::peer::{PeerClient, PeerError};
use crate::proto::{StripeRef, Wire};
use crate::reply::error;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::StatusCode;
use shoal_store::{EntryKey, Store};
use std::net::SocketAddr;
use std::time::Duration;

/// Where stored lengths are asked for.
pub const PATH: &str = "/peer/v1/stat";

/// The header carrying the length.
pub const LEN_HEADER: &str = "x-shoal-stripe-len";

/// This endpoint, for the list.
pub const ENDPOINT: Endpoint = Endpoint {
    path: PATH,
    route: || get(handle),
};

async fn handle(State(p): State<Peers>, Ask(stripe): Ask<StripeRef>) -> Response {
    match stored_len(&p.node.store, stripe.entry_key()).await {
        Some(len) => (StatusCode::OK, [(LEN_HEADER, len.to_string())]).into_response(),
        None => error(StatusCode::NOT_FOUND, "not cached"),
    }
}

/// The length of `store`'s copy of `key`, if it holds one.
pub async fn stored_len(store: &Store, key: EntryKey) -> Option<u64> {
    let store = store.clone();
    tokio::task::spawn_blocking(move || store.get(&key).ok().flatten().map(|l| l.len))
        .await
        .ok()
        .flatten()
}

/// How long the peer at `addr`'s stored copy of `stripe` is; `None` if
/// it holds none.
pub async fn ask(
    client: &PeerClient,
    addr: SocketAddr,
    stripe: &StripeRef,
    limit: Duration,
) -> Result<Option<u64>, PeerError> {
    match client.call(addr, PATH, &stripe.to_query(), limit).await {
        Ok(resp) => resp
            .headers()
            .get(LEN_HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .map(Some)
            .ok_or_else(|| PeerError::Corrupt("stat answer without a length".into())),
        Err(PeerError::NotCached) => Ok(None),
        Err(e) => Err(e),
    }
}
