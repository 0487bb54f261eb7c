//! `GET /peer/v1/status`: this node's status (members, ring, store,
//! transfers, breakers), the same JSON as the local API's `/v1/status`,
//! for a peer that holds the cluster token: what a fleet-wide view asks
//! every member for.

use super::{Endpoint, Peers};
use crate::peer::{PeerClient, PeerError};
use crate::reply::{busy, json};
use crate::status::Status;
use axum::extract::State;
use axum::response::Response;
use axum::routing::get;
use http_body_util::{BodyExt, Limited};
use std::net::SocketAddr;
use std::time::Duration;

/// Where a node's status is asked for.
pub const PATH: &str = "/peer/v1/status";

/// The largest status accepted: a member list of 100,000 nodes.
const MAX_BODY: usize = 64 << 20;

/// This endpoint, for the list.
pub const ENDPOINT: Endpoint = Endpoint {
    path: PATH,
    route: || get(handle),
};

async fn handle(State(p): State<Peers>) -> Response {
    // A slot of the inbound limit while it is built, like any request.
    let Some(_permit) = p.admit() else {
        return busy();
    };
    json(&crate::status::status(&p.node).await)
}

/// The status of the peer at `addr`, all within `limit`.
pub async fn ask(
    client: &PeerClient,
    addr: SocketAddr,
    limit: Duration,
) -> Result<Status, PeerError> {
    let read = async {
        let resp = client.call(addr, PATH, "", limit).await?;
        let body = Limited::new(resp.into_body(), MAX_BODY)
            .collect()
            .await
            .map_err(|e| PeerError::Broken(e.to_string()))?
            .to_bytes();
        serde_json::from_slice(&body).map_err(|e| PeerError::Corrupt(format!("status: {e}")))
    };
    tokio::time::timeout(limit, read)
        .await
        .map_err(|_| PeerError::Timeout(limit))?
}
