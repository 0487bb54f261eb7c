//! The peer protocol's endpoints: one module each, holding its path, its
//! typed request and answer, its handler and its client call (mini-redis
//! keeps one file per command the same way). The list at the bottom is
//! the only registration: [`router`] mounts every endpoint in it behind
//! the cluster token, and the client calls name their own module's path.
//! Adding an endpoint is a new module here and its name in the list.
//!
//! Every request is a `GET` whose query carries a [`Wire`] request, checked
//! before the handler runs ([`Ask`]); a malformed one gets a 400 with the
//! reason.

use crate::node::Node;
use crate::proto::{StripeQuery, Wire};
use crate::reply::error;
use axum::Router;
use axum::extract::{Query, Request, State};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::MethodRouter;
use http::{StatusCode, header};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// What the peer handlers share: the node, and the bound on the work
/// peers may ask of it at once.
#[derive(Clone)]
pub struct Peers {
    /// The node that answers.
    pub node: Arc<Node>,
    inbound: Arc<Semaphore>,
}

impl Peers {
    /// A slot of the inbound limit, or `None` (counted) when the limit is
    /// full or the node is draining: a leaving node takes no new work.
    pub fn admit(&self) -> Option<OwnedSemaphorePermit> {
        let permit = self.inbound.clone().try_acquire_owned().ok();
        let permit = permit.filter(|_| !self.node.draining.load(Ordering::SeqCst));
        if permit.is_none() {
            self.node.metrics.inbound_rejected.inc();
        }
        permit
    }
}

/// One peer endpoint: where it is mounted and what answers there.
pub struct Endpoint {
    /// Its path under the peer port.
    pub path: &'static str,
    /// Its handlers, by method.
    pub route: fn() -> MethodRouter<Peers>,
}

/// A request of type `T` from the query, checked; a bad one is refused
/// with 400 and the reason before the handler runs.
pub struct Ask<T>(pub T);

impl<T: Wire, S: Send + Sync> axum::extract::FromRequestParts<S> for Ask<T> {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut http::request::Parts,
        state: &S,
    ) -> Result<Self, Response> {
        Query::<StripeQuery>::from_request_parts(parts, state)
            .await
            .map_err(|e| e.body_text())
            .and_then(|Query(q)| T::from_query(q).map_err(|e| e.to_string()))
            .map(Ask)
            .map_err(|e| error(StatusCode::BAD_REQUEST, e))
    }
}

/// The peer protocol's routes, every one behind the cluster token.
pub fn router(node: Arc<Node>) -> Router {
    let state = Peers {
        inbound: Arc::new(Semaphore::new(node.cfg.inbound_limit)),
        node,
    };
    ALL.iter()
        .fold(Router::new(), |r, e| r.route(e.path, (e.route)()))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_token))
        .with_state(state)
}

/// Constant-time comparison, so a token cannot be guessed byte by byte.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn require_token(State(s): State<Peers>, req: Request, next: Next) -> Response {
    // With peer TLS, a peer is a connection that presented a certificate
    // of the cluster CA (the handshake refused any other certificate;
    // this refuses none at all), and the token is a second factor.
    let certified = req.extensions().get::<crate::tls::PeerCertificate>();
    if s.node.tls.is_some() && certified != Some(&crate::tls::PeerCertificate(true)) {
        return error(
            StatusCode::UNAUTHORIZED,
            "a client certificate from the cluster CA is required",
        );
    }
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

/// Declares each endpoint's module and lists it in [`ALL`].
macro_rules! endpoints {
    ($($name:ident),* $(,)?) => {
        $(pub mod $name;)*
        /// Every peer endpoint, as [`router`] mounts them.
        pub const ALL: &[Endpoint] = &[$($name::ENDPOINT),*];
    };
}

endpoints!(stripe, replicate, suspect, purge, stat, roster, status);
