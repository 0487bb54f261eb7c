//! The agent's HTTP surfaces: the peer protocol (the routes of
//! `crate::endpoints`, token-protected, bounded inbound concurrency) and
//! the local API for this node's clients, both with /metrics, /healthz
//! and /readyz.

use crate::node::Node;
use crate::object::response::unsatisfiable;
use crate::object::{ByteRange, ObjectError, open_object};
use crate::origin::OriginError;
use crate::reply::{error, json};
use crate::status::STATUS_PATH;
use axum::Router;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::{HeaderMap, StatusCode, header};
use serde::Deserialize;
use std::sync::Arc;

/// The peer port's router: every peer endpoint, and health.
pub fn peer_router(node: Arc<Node>) -> Router {
    crate::endpoints::router(node.clone()).merge(health(node))
}

/// The local API router.
pub fn api_router(node: Arc<Node>) -> Router {
    Router::new()
        .route("/v1/object", get(object))
        .route(STATUS_PATH, get(status))
        .with_state(node.clone())
        .merge(health(node))
}

fn health(node: Arc<Node>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state(node)
}

/// Ready unless draining. Problems found at start (containerd not reading
/// the hosts files) are listed after `ready`: the node still serves its
/// peers, so they do not fail readiness, but they show where an operator
/// looks.
async fn readyz(State(node): State<Arc<Node>>) -> Response {
    if draining(&node) {
        return error(StatusCode::SERVICE_UNAVAILABLE, "draining");
    }
    let mut body = String::from("ready\n");
    for p in node.host.problems() {
        body.push_str("warning: ");
        body.push_str(&p);
        body.push('\n');
    }
    body.into_response()
}

fn draining(node: &Node) -> bool {
    node.draining.load(std::sync::atomic::Ordering::SeqCst)
}

async fn status(State(node): State<Arc<Node>>) -> Response {
    json(&crate::status::status(&node).await)
}

async fn metrics(State(node): State<Arc<Node>>) -> Response {
    node.refresh_store_metrics();
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        node.metrics.render(),
    )
        .into_response()
}

/// Query of `GET /v1/object`.
#[derive(Debug, Deserialize)]
pub struct ObjectQuery {
    /// The origin URL.
    pub url: String,
    /// Expected `sha256:` digest of the whole object.
    pub digest: Option<String>,
}

async fn object(
    State(node): State<Arc<Node>>,
    headers: HeaderMap,
    query: Result<Query<ObjectQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    if draining(&node) {
        return error(StatusCode::SERVICE_UNAVAILABLE, "draining");
    }
    let q = match query {
        Ok(Query(q)) => q,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.body_text()),
    };
    let range = match headers
        .get(header::RANGE)
        .map(|v| v.to_str().ok().and_then(ByteRange::parse))
    {
        None => None,
        Some(Some(r)) => Some(r),
        Some(None) => {
            return error(
                StatusCode::RANGE_NOT_SATISFIABLE,
                "only one bytes=a-b range is supported",
            );
        }
    };
    let read = match open_object(&node, &q.url, q.digest, range).await {
        Ok(r) => r,
        Err(ObjectError::Bad(e)) => return error(StatusCode::BAD_REQUEST, e.to_string()),
        Err(e @ ObjectError::Range { size }) => {
            let mut r = error(StatusCode::RANGE_NOT_SATISFIABLE, e.to_string());
            let (k, v) = unsatisfiable(size);
            r.headers_mut().insert(k, v);
            return r;
        }
        Err(ObjectError::Origin(e @ OriginError::Refused(_))) => {
            return error(StatusCode::FORBIDDEN, e.to_string());
        }
        Err(ObjectError::Origin(e)) => return error(StatusCode::BAD_GATEWAY, e.to_string()),
    };
    read.into_response(range.is_some(), &[])
        .unwrap_or_else(|e| error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
}
