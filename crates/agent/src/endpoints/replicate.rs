//! `GET /peer/v1/replicate?<ReplicateHint>`: a node that fetched a stripe
//! from the origin asks its first successors to pull a copy from it, so
//! that `min_copies` nodes hold the stripe. The receiver answers 202 at
//! once and pulls in the background, holding a slot of its inbound limit
//! until done; a full limit or a draining node answers 503, and the hint
//! is dropped (the stripe is still fetched on demand later).

use super::{Ask, Endpoint, Peers};
use crate::node::Node;
use crate::peer::{PeerClient, PeerError};
use crate::proto::{ProtoError, StripeQuery, StripeRef, StripeRequest, Wire};
use crate::reply::busy;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::StatusCode;
use shoal_placement::NodeId;
use std::net::SocketAddr;
use std::sync::Arc;

/// Where replication hints go.
pub const PATH: &str = "/peer/v1/replicate";

/// This endpoint, for the list.
pub const ENDPOINT: Endpoint = Endpoint {
    path: PATH,
    route: || get(handle),
};

/// A hint: pull `stripe` from `source` (only from it, and only the copy it
/// holds: a relay request marked `copy_only`, so no further hop, stand-in
/// or origin), within `ttl_ms`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplicateHint {
    /// The stripe to copy.
    pub stripe: StripeRef,
    /// The node that holds it.
    pub source: NodeId,
    /// Milliseconds the pull may take.
    pub ttl_ms: u64,
}

impl ReplicateHint {
    /// The stripe request the receiver serves itself to pull the copy.
    fn request(&self) -> StripeRequest {
        let mut req = StripeRequest::new(self.stripe.clone(), &[self.source], &[], self.ttl_ms);
        req.relay = true;
        req.copy_only = true;
        req
    }
}

/// On the wire a hint is the stripe request its receiver serves itself.
impl Wire for ReplicateHint {
    fn to_query(&self) -> String {
        self.request().to_query()
    }

    fn from_query(q: StripeQuery) -> Result<Self, ProtoError> {
        let req = StripeRequest::from_query(q)?;
        match req.path[..] {
            [source] => Ok(ReplicateHint {
                stripe: req.stripe,
                source,
                ttl_ms: req.ttl_ms,
            }),
            _ => Err(ProtoError::BadRequest(
                "a replication hint names its source as the only hop".into(),
            )),
        }
    }
}

async fn handle(State(p): State<Peers>, Ask(hint): Ask<ReplicateHint>) -> Response {
    // The pull holds an inbound slot until it is done, like a request.
    let Some(permit) = p.admit() else {
        return busy();
    };
    let node = p.node.clone();
    p.node.spawn(async move {
        pull(node, hint.request()).await;
        drop(permit);
    });
    StatusCode::ACCEPTED.into_response()
}

/// Fetches a stripe into this node's store, discarding the bytes (the
/// flight caches them).
async fn pull(node: Arc<Node>, req: StripeRequest) {
    let key = req.stripe.entry_key();
    if node.store.contains(&key) {
        return;
    }
    // This node is fetching the stripe already (its own client is pulling
    // the object, through rack relays or along its path): that flight
    // caches it, so the replica costs the source no second upload. Only a
    // flight that fails or leaves no copy sends the pull to the source.
    if let Some(flight) = node.flight_in_progress(&key) {
        let wait = std::time::Duration::from_millis(req.ttl_ms);
        let _ = tokio::time::timeout(wait, flight.settled()).await;
        // Done is not enough: a flight relayed through scratch space (a
        // full store) or refused at admission left no copy here.
        if node.store.contains(&key) {
            return;
        }
    }
    match node.serve(req, false).await {
        Ok(mut rx) => while rx.recv().await.is_some() {},
        Err(e) => tracing::debug!("replica pull: {e}"),
    }
}

/// Sends `hint` to the peer at `addr`; only whether it was taken matters.
pub async fn send(client: &PeerClient, addr: SocketAddr, hint: &ReplicateHint) -> Result<(), PeerError> {
    client
        .call(addr, PATH, &hint.to_query(), crate::timing::HINT)
        .await
        .map(drop)
}
