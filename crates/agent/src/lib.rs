//! shoal's agent: the forward-and-cache data plane every node runs.
//!
//! - [`proto`]: stripes, requests and the framed wire format.
//! - [`flight`]: single flight, one fetch per stripe per node.
//! - `serve`: store hit, join, forward or fetch from the origin.
//! - [`peer`] and [`origin`]: the clients it fetches through.
//! - [`object`]: whole objects for local clients (`shoal get`).
//! - [`server`]: the peer protocol and local API over HTTP.
//! - [`node`], [`config`], [`metrics`]: state, settings, observability.

pub mod config;
pub mod flight;
pub mod metrics;
pub mod node;
pub mod object;
pub mod origin;
pub mod peer;
pub mod proto;
mod serve;
pub mod server;

pub use config::{AgentConfig, Resolved};
pub use node::{Node, StartError};
pub use serve::{REPLICATE_PATH, STRIPE_PATH, ServeError};

use axum::serve::ListenerExt;
use std::future::Future;
use tokio::net::TcpListener;

/// Runs an agent until `shutdown` completes, then stops accepting and
/// lets responses in progress finish.
pub async fn run(
    cfg: Resolved,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), StartError> {
    let c = &cfg.config;
    if cfg.token.is_none() {
        tracing::warn!(
            listen = %c.listen,
            "no cluster token is set: anyone who can reach this address can use the peer protocol; set `token` or `token_file`"
        );
    }
    let (listen, api_listen) = (c.listen, c.api_listen);
    let node = Node::new(cfg)?;
    // Frames go out one chunk at a time as they arrive from upstream, so
    // Nagle's algorithm would hold each chunk's tail for the peer's
    // delayed ACK; every accepted connection gets TCP_NODELAY.
    let bind = |addr| async move {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| StartError::Bind { addr, source })?;
        Ok::<_, StartError>(listener.tap_io(|tcp| {
            if let Err(e) = tcp.set_nodelay(true) {
                tracing::debug!("TCP_NODELAY: {e}");
            }
        }))
    };
    let peer_l = bind(listen).await?;
    let api_l = bind(api_listen).await?;
    tracing::info!(id = %node.id, peer = %listen, api = %api_listen, "agent listening");
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let peer = axum::serve(peer_l, server::peer_router(node.clone()))
        .with_graceful_shutdown(stopped(stop_rx.clone()));
    let api = axum::serve(api_l, server::api_router(node.clone()))
        .with_graceful_shutdown(stopped(stop_rx));
    let (a, b) = tokio::join!(peer, api);
    for r in [a, b] {
        if let Err(e) = r {
            tracing::error!("server: {e}");
        }
    }
    Ok(())
}
