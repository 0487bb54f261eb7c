//! `GET /peer/v1/stripe?<StripeRequest>`: serve a stripe, from
//! `request.from` to its end, as a stream of frames (see `crate::proto`).
//! The receiver serves it as its own client's reads are served
//! (`Node::serve`): from its store, a flight in progress, the next hop or
//! the origin. 404 answers a `cached` peek that found nothing, or a rack
//! peer's request for a piece this node is itself waiting on a rack peer
//! for; 503 a full inbound limit or a draining node.

use super::{Ask, Endpoint, Peers};
use crate::peer::{FrameStream, PeerClient, PeerError};
use crate::proto::{Frame, StripeRequest, Wire};
use crate::reply::{busy, error};
use axum::body::Body;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use futures_util::stream;
use http::{StatusCode, header};
use std::net::SocketAddr;
use tokio::sync::{OwnedSemaphorePermit, mpsc};
use tokio::time::Instant;

/// Where stripes are asked for.
pub const PATH: &str = "/peer/v1/stripe";

/// This endpoint, for the list.
pub const ENDPOINT: Endpoint = Endpoint {
    path: PATH,
    route: || get(handle),
};

/// Why a stripe could not even start being served (the answer before the
/// first frame).
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// A peek, and the stripe is not in the store.
    #[error("not cached")]
    NotCached,
    /// A rack peer asked this node to relay a piece it is itself waiting
    /// on a rack peer for (their views disagree on the relay); the asker
    /// goes to its next relay or its own path.
    #[error("not relaying this piece")]
    NotRelaying,
    /// Local trouble (a blocking task failed).
    #[error("internal: {0}")]
    Internal(String),
}

async fn handle(State(p): State<Peers>, Ask(req): Ask<StripeRequest>) -> Response {
    let Some(permit) = p.admit() else {
        return busy();
    };
    match p.node.serve(req, false).await {
        Ok(rx) => (
            [(header::CONTENT_TYPE, "application/x-shoal-stripe")],
            frame_body(rx, permit),
        )
            .into_response(),
        Err(e @ (ServeError::NotCached | ServeError::NotRelaying)) => {
            error(StatusCode::NOT_FOUND, e.to_string())
        }
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// Frames from a channel as a response body, holding `permit` until done.
fn frame_body(rx: mpsc::Receiver<Frame>, permit: OwnedSemaphorePermit) -> Body {
    // Each frame goes out as its head, then its chunk uncopied.
    let s = stream::unfold(
        (rx, permit, None::<Bytes>),
        |(mut rx, permit, pending)| async move {
            if let Some(chunk) = pending {
                return Some((Ok::<Bytes, std::io::Error>(chunk), (rx, permit, None)));
            }
            let (head, chunk) = rx.recv().await?.encode_parts();
            Some((Ok(head), (rx, permit, chunk)))
        },
    );
    Body::from_stream(s)
}

/// Asks the peer at `addr` for `req` and returns its frames once the
/// answer's headers are in, all within `deadline`.
pub async fn open(
    client: &PeerClient,
    addr: SocketAddr,
    req: &StripeRequest,
    deadline: Instant,
) -> Result<FrameStream, PeerError> {
    client.open(addr, PATH, &req.to_query(), deadline).await
}
