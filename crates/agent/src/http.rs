//! The agent's HTTP surfaces: the peer protocol (token-protected, bounded
//! inbound concurrency) and the local API for this node's clients, both
//! with /metrics, /healthz and /readyz.

use crate::members::ROSTER_PATH;
use crate::node::Node;
use crate::object::response::unsatisfiable;
use crate::object::{ByteRange, ObjectError, open_object};
use crate::proto::{Frame, STAT_PATH, STRIPE_LEN_HEADER, StripeQuery, StripeRequest};
use crate::serve::suspect::{PURGE_PATH, SUSPECT_PATH, purge, recheck};
use crate::serve::{REPLICATE_PATH, STRIPE_PATH, ServeError, pull_replica};
use crate::status::STATUS_PATH;
use axum::Router;
use axum::body::Body;
use axum::extract::{Query, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use futures_util::stream;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use serde::Deserialize;
use std::sync::Arc;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};

/// Shared by the handlers.
#[derive(Clone)]
pub struct AppState {
    node: Arc<Node>,
    inbound: Arc<Semaphore>,
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    let body = format!("{{\"error\":{:?}}}\n", message.into());
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// The peer-protocol router.
pub fn peer_router(node: Arc<Node>) -> Router {
    let state = AppState {
        inbound: Arc::new(Semaphore::new(node.cfg.inbound_limit)),
        node,
    };
    let peer = Router::new()
        .route(STRIPE_PATH, get(stripe))
        .route(REPLICATE_PATH, get(replicate).post(replicate))
        .route(SUSPECT_PATH, get(suspect).post(suspect))
        .route(STAT_PATH, get(stat))
        .route(PURGE_PATH, get(purge_copy).post(purge_copy))
        .route(ROSTER_PATH, get(roster))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_token));
    peer.merge(health()).with_state(state)
}

/// The local API router.
pub fn api_router(node: Arc<Node>) -> Router {
    let state = AppState {
        inbound: Arc::new(Semaphore::new(node.cfg.inbound_limit)),
        node,
    };
    Router::new()
        .route("/v1/object", get(object))
        .route(STATUS_PATH, get(status))
        .merge(health())
        .with_state(state)
}

fn health() -> Router<AppState> {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
}

/// Ready unless draining. Problems found at start (containerd not reading
/// the hosts files) are listed after `ready`: the node still serves its
/// peers, so they do not fail readiness, but they show where an operator
/// looks.
async fn readyz(State(s): State<AppState>) -> Response {
    if draining(&s) {
        return error(StatusCode::SERVICE_UNAVAILABLE, "draining");
    }
    let mut body = String::from("ready\n");
    for p in s.node.host.problems() {
        body.push_str("warning: ");
        body.push_str(&p);
        body.push('\n');
    }
    body.into_response()
}

fn draining(s: &AppState) -> bool {
    s.node.draining.load(std::sync::atomic::Ordering::SeqCst)
}

fn json(value: &impl serde::Serialize) -> Response {
    match serde_json::to_vec(value) {
        Ok(body) => ([(header::CONTENT_TYPE, "application/json")], body).into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

async fn roster(State(s): State<AppState>) -> Response {
    match crate::status::roster(&s.node).await {
        Some(records) => json(&records),
        None => error(
            StatusCode::NOT_FOUND,
            "this node uses a static peer list, not gossip",
        ),
    }
}

async fn status(State(s): State<AppState>) -> Response {
    json(&crate::status::status(&s.node).await)
}

/// Constant-time comparison, so a token cannot be guessed byte by byte.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn require_token(State(s): State<AppState>, req: Request, next: Next) -> Response {
    if let Some(token) = &s.node.cfg.token {
        let presented = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if !presented.is_some_and(|p| same(p.as_bytes(), token.as_bytes())) {
            return error(StatusCode::UNAUTHORIZED, "missing or wrong cluster token");
        }
    }
    next.run(req).await
}

async fn metrics(State(s): State<AppState>) -> Response {
    s.node.refresh_store_metrics();
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        s.node.metrics.render(),
    )
        .into_response()
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

/// A slot of the inbound limit, or `None` (counted) when the limit is
/// full or the node is draining: a leaving node takes no new work.
fn admit(s: &AppState) -> Option<OwnedSemaphorePermit> {
    let permit = s.inbound.clone().try_acquire_owned().ok();
    let permit = permit.filter(|_| !draining(s));
    if permit.is_none() {
        s.node.metrics.inbound_rejected.inc();
    }
    permit
}

/// The fast 503 a refused peer retries elsewhere.
fn busy() -> Response {
    let mut r = error(StatusCode::SERVICE_UNAVAILABLE, "busy");
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    r
}

async fn stripe(State(s): State<AppState>, Stripe(req): Stripe) -> Response {
    let Some(permit) = admit(&s) else {
        return busy();
    };
    match s.node.serve(req, false).await {
        Ok(rx) => (
            [(header::CONTENT_TYPE, "application/x-shoal-stripe")],
            frame_body(rx, permit),
        )
            .into_response(),
        Err(ServeError::NotCached) => error(StatusCode::NOT_FOUND, "not cached"),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// A validated stripe request from the query; a bad one is refused with
/// 400 and the reason before the handler runs.
struct Stripe(StripeRequest);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Stripe {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut http::request::Parts,
        state: &S,
    ) -> Result<Self, Response> {
        Query::<StripeQuery>::from_request_parts(parts, state)
            .await
            .map_err(|e| e.body_text())
            .and_then(|Query(q)| q.validate().map_err(|e| e.to_string()))
            .map(Stripe)
            .map_err(|e| error(StatusCode::BAD_REQUEST, e))
    }
}

/// The answer to a request to drop a copy.
fn dropped(removed: bool, kept: &'static str) -> Response {
    (StatusCode::OK, if removed { "removed\n" } else { kept }).into_response()
}

/// A peer found the copy of a stripe this node sent it corrupt: re-check
/// it (and remove it if so) before answering.
async fn suspect(State(s): State<AppState>, Stripe(req): Stripe) -> Response {
    dropped(recheck(&s.node, req.stripe.entry_key()).await, "intact\n")
}

/// A peer found the object a stripe belongs to wrong: drop the copy.
async fn purge_copy(State(s): State<AppState>, Stripe(req): Stripe) -> Response {
    dropped(purge(&s.node, req.stripe.entry_key()).await, "absent\n")
}

/// How long this node's stored copy of a stripe is (404: none).
async fn stat(State(s): State<AppState>, Stripe(req): Stripe) -> Response {
    let (store, key) = (s.node.store.clone(), req.stripe.entry_key());
    let len = tokio::task::spawn_blocking(move || store.get(&key).ok().flatten().map(|l| l.len))
        .await
        .ok()
        .flatten();
    match len {
        Some(len) => (StatusCode::OK, [(STRIPE_LEN_HEADER, len.to_string())]).into_response(),
        None => error(StatusCode::NOT_FOUND, "not cached"),
    }
}

async fn replicate(State(s): State<AppState>, Stripe(req): Stripe) -> Response {
    if req.path.len() != 1 {
        return error(
            StatusCode::BAD_REQUEST,
            "a replication hint names its source as the only hop",
        );
    }
    // The pull holds an inbound slot until it is done, like a request.
    let Some(permit) = admit(&s) else {
        return busy();
    };
    let node = s.node.clone();
    s.node.spawn(async move {
        pull_replica(node, req).await;
        drop(permit);
    });
    StatusCode::ACCEPTED.into_response()
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
    State(s): State<AppState>,
    headers: HeaderMap,
    query: Result<Query<ObjectQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    if draining(&s) {
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
    let read = match open_object(&s.node, &q.url, q.digest, range).await {
        Ok(r) => r,
        Err(ObjectError::Bad(e)) => return error(StatusCode::BAD_REQUEST, e.to_string()),
        Err(e @ ObjectError::Range { size }) => {
            let mut r = error(StatusCode::RANGE_NOT_SATISFIABLE, e.to_string());
            let (k, v) = unsatisfiable(size);
            r.headers_mut().insert(k, v);
            return r;
        }
        Err(ObjectError::Origin(e)) => return error(StatusCode::BAD_GATEWAY, e.to_string()),
    };
    read.into_response(range.is_some(), &[])
        .unwrap_or_else(|e| error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
}
