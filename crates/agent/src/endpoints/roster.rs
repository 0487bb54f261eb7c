//! `GET /peer/v1/roster`: this node's membership roster as JSON records,
//! pulled by a joining node from its seeds and by every node for
//! anti-entropy (`shoal-membership`'s bootstrap). 404 in static mode,
//! where there is no roster.

use super::{Endpoint, Peers};
use crate::peer::PeerClient;
use crate::reply::{error, json};
use axum::extract::State;
use axum::response::Response;
use axum::routing::get;
use http::StatusCode;
use shoal_membership::Record;
use shoal_membership::bootstrap::Fetch;
use std::net::SocketAddr;

/// Where rosters are served.
pub const PATH: &str = "/peer/v1/roster";

/// This endpoint, for the list.
pub const ENDPOINT: Endpoint = Endpoint {
    path: PATH,
    route: || get(handle),
};

async fn handle(State(p): State<Peers>) -> Response {
    match p.node.roster().await {
        Some(records) => json(&records),
        None => error(
            StatusCode::NOT_FOUND,
            "this node uses a static peer list, not gossip",
        ),
    }
}

/// Rosters fetched from peers, with the cluster token: the client side,
/// as the membership bootstrap wants it.
pub struct Client {
    http: reqwest::Client,
    token: Option<String>,
    /// `https` with peer TLS, else `http`.
    scheme: &'static str,
    /// Told the round trip of each pull, so the first stripe requests of
    /// a new node already have timeouts sized for this network.
    peers: PeerClient,
}

impl Client {
    /// A roster client presenting `token`, reporting round trips to
    /// `peers`.
    pub fn new(
        token: Option<String>,
        tls: Option<std::sync::Arc<rustls::ClientConfig>>,
        peers: PeerClient,
    ) -> Result<Client, reqwest::Error> {
        let mut http = reqwest::Client::builder().no_proxy();
        let scheme = match tls {
            Some(config) => {
                http = http.use_preconfigured_tls((*config).clone());
                "https"
            }
            None => "http",
        };
        Ok(Client {
            http: http.build()?,
            token,
            scheme,
            peers,
        })
    }
}

impl shoal_membership::RosterSource for Client {
    fn fetch(&self, addr: SocketAddr) -> Fetch<'_> {
        Box::pin(async move {
            let mut req = self
                .http
                .get(format!("{}://{addr}{PATH}", self.scheme))
                .timeout(crate::timing::ROSTER);
            if let Some(t) = &self.token {
                req = req.bearer_auth(t);
            }
            let sent = tokio::time::Instant::now();
            let resp = req.send().await.map_err(|e| e.to_string())?;
            self.peers.observe(addr, sent.elapsed());
            if !resp.status().is_success() {
                return Err(format!("roster: HTTP {}", resp.status()));
            }
            let body = resp.bytes().await.map_err(|e| e.to_string())?;
            serde_json::from_slice::<Vec<Record>>(&body).map_err(|e| format!("roster: {e}"))
        })
    }
}
