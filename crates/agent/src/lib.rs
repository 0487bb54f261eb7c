//! shoal's agent: the forward-and-cache data plane every node runs.
//!
//! - [`proto`]: stripes, requests and the framed wire format.
//! - [`flight`]: single flight, one fetch per stripe per node.
//! - `serve`: store hit, join, forward or fetch from the origin.
//! - [`peer`] and [`origin`]: the clients it fetches through.
//! - [`object`]: whole objects for local clients (`shoal get`).
//! - [`endpoints`]: the peer protocol's endpoints, one module each (path,
//!   typed request, handler, client call), and the list the router mounts.
//! - [`http`]: the peer port and the local API over HTTP.
//! - [`members`]: static or gossip membership, turned into views.
//! - [`node`], [`config`], [`metrics`], [`status`]: state, settings,
//!   observability; [`timing`]: every fixed duration, with why.
//! - [`startup`]: what the agent sets up on its node first: labels from
//!   its Kubernetes Node ([`kubernetes`]), containerd's hosts files
//!   ([`containerd`]).
//!
//! Modules depend one way (`tests/layers.rs` fails on a cycle), lowest
//! first: `timing`, `proto`, `reply`, `config` (every settings table) and
//! `metrics`; the clients `origin` (with the registries' auth) and `peer`;
//! `flight`, `kubernetes`, `containerd`, `startup`; `node`; `endpoints`;
//! `members` and `serve` (`Node::serve`, the design's `serve(K, path,
//! fallbacks)`); `object`; `mirror`, `status`; `http` on top.

pub mod config;
pub mod containerd;
pub mod endpoints;
pub mod flight;
pub mod http;
pub mod kubernetes;
pub mod listen;
pub mod members;
pub mod metrics;
pub mod mirror;
pub mod node;
pub mod object;
pub mod origin;
pub mod peer;
pub mod proto;
mod reply;
mod serve;
pub mod startup;
pub mod status;
pub mod timing;
pub mod tls;

pub use config::{AgentConfig, Resolved};
pub use node::{Node, StartError};

/// Makes ring rustls's process-wide crypto provider: reqwest is built
/// without a default one. Every TLS client of the agent and the command
/// line calls this first; calls after the first change nothing.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

use std::future::Future;

/// A running agent (see [`start`]): the addresses it bound, its state,
/// and the handle that stops it.
pub struct Running {
    /// Where the peer protocol listens: the port the system chose when
    /// `listen` named port 0 (gossip uses it over UDP too, unless
    /// `gossip_listen` says otherwise).
    pub peer: std::net::SocketAddr,
    /// Where the local API listens.
    pub api: std::net::SocketAddr,
    /// Where the OCI mirror listens.
    pub mirror: std::net::SocketAddr,
    /// The node's state.
    pub node: std::sync::Arc<Node>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    done: tokio::task::JoinHandle<()>,
}

impl Running {
    /// Leaves the cluster (gossip announces it at once), stops taking new
    /// work, lets transfers in progress finish for up to `drain_ms`, and
    /// returns once the servers have stopped.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.done).await;
    }
}

/// Runs an agent until `shutdown` completes, then stops it as
/// [`Running::stop`] does (or until its servers end by themselves).
pub async fn run(
    cfg: Resolved,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), StartError> {
    let mut running = start(cfg).await?;
    tokio::select! {
        _ = shutdown => running.stop().await,
        // The servers ended by themselves (each logged why).
        _ = &mut running.done => {}
    }
    Ok(())
}

/// Starts an agent: sets up its node, binds its three ports (port 0 takes
/// any free port; the node advertises the one it got), joins the cluster
/// and serves in the background until [`Running::stop`].
pub async fn start(mut cfg: Resolved) -> Result<Running, StartError> {
    // The ports are bound first, so that port 0 works and the node
    // advertises the port it got, but they listen only once the node is
    // ready: until then a connection is refused at once, and peers and
    // containerd go elsewhere instead of waiting.
    let bind = |addr: std::net::SocketAddr| {
        let err = |source| StartError::Bind { addr, source };
        let socket = if addr.is_ipv4() {
            tokio::net::TcpSocket::new_v4()
        } else {
            tokio::net::TcpSocket::new_v6()
        }
        .map_err(err)?;
        // A restarted agent takes its port back from TIME_WAIT; port 0
        // must get a port nobody holds, so no reuse there.
        if addr.port() != 0 {
            socket.set_reuseaddr(true).map_err(err)?;
        }
        socket.bind(addr).map_err(err)?;
        let local = socket.local_addr().map_err(err)?;
        Ok::<_, StartError>((socket, local))
    };
    // Frames go out one chunk at a time as they arrive from upstream, so
    // Nagle's algorithm would hold each chunk's tail for the peer's
    // delayed ACK; `listen::serve` sets TCP_NODELAY on every connection.
    let listen_on = |socket: tokio::net::TcpSocket, addr| {
        socket
            .listen(1024)
            .map_err(|source| StartError::Bind { addr, source })
    };
    let (peer_s, listen) = bind(cfg.listen)?;
    let (api_s, api_listen) = bind(cfg.api_listen)?;
    let (mirror_s, mirror_listen) = bind(cfg.mirror.listen)?;
    cfg.listen = listen;
    cfg.api_listen = api_listen;
    cfg.mirror.listen = mirror_listen;
    let host = startup::prepare(&mut cfg).await;
    let c: &AgentConfig = &cfg;
    if cfg.token.is_none() {
        tracing::warn!(
            listen = %c.listen,
            "no cluster token is set: anyone who can reach this address can use the peer protocol; set `token` or `token_file`"
        );
    }
    let drain = std::time::Duration::from_millis(c.drain_ms);
    let (gossip, gossip_thread) = if c.peers.is_empty() {
        let (bind, _) = c.gossip_addrs();
        let key = c
            .token
            .as_deref()
            .map(shoal_membership::transport::gossip_key);
        let me = members::identity(c);
        let seed = me.generation ^ shoal_placement::NodeId::from_name(&c.name).0;
        let (max_packet, settings) = (c.gossip.max_packet, c.gossip.clone());
        let thread =
            members::GossipThread::start().map_err(|e| StartError::Gossip(e.to_string()))?;
        let g = thread
            .run(async move {
                let transport = shoal_membership::transport::udp(bind, max_packet, key)
                    .await
                    .map_err(|source| StartError::Bind { addr: bind, source })?;
                shoal_membership::Gossip::spawn(me, &settings, transport, seed)
                    .map_err(|e| StartError::Gossip(e.to_string()))
            })
            .await
            .ok_or_else(|| StartError::Gossip("the gossip thread stopped".into()))??;
        tracing::info!(gossip = %bind, seeds = ?c.seeds, "gossip membership");
        (Some(g), Some(thread))
    } else {
        tracing::info!(peers = c.peers.len(), "static membership");
        (None, None)
    };
    let membership = members::initial(&cfg, gossip.as_ref())?;
    let node = Node::new(cfg, gossip.clone(), membership, host)?;
    if let Some(g) = gossip {
        members::follow(&node, g).map_err(|e| StartError::Gossip(e.to_string()))?;
    }
    let peer_l = listen_on(peer_s, listen)?;
    let api_l = listen_on(api_s, api_listen)?;
    let mirror_l = listen_on(mirror_s, mirror_listen)?;
    tracing::info!(id = %node.id, peer = %listen, api = %api_listen, mirror = %mirror_listen, "agent listening");
    let (stop, stop_requested) = tokio::sync::oneshot::channel::<()>();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let leaving = node.clone();
    tokio::spawn(async move {
        let _ = stop_requested.await;
        leaving
            .draining
            .store(true, std::sync::atomic::Ordering::SeqCst);
        if let Some(g) = &leaving.gossip {
            match tokio::time::timeout(timing::LEAVE, g.leave()).await {
                Ok(Ok(())) => tracing::info!("left the cluster; draining"),
                _ => tracing::warn!("could not announce the leave; draining anyway"),
            }
        }
        // The membership followers end; the view stays as it is.
        leaving.stopping.cancel();
        let _ = stop_tx.send(true);
    });
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let hygiene = |port, tls| listen::Hygiene {
        port,
        max_connections: node.cfg.max_connections,
        header_read_timeout: std::time::Duration::from_millis(node.cfg.header_read_timeout_ms),
        tls,
    };
    let server = |l, router, port, tls| {
        listen::serve(
            l,
            router,
            hygiene(port, tls),
            node.metrics.clone(),
            stopped(stop_rx.clone()),
        )
    };
    let peer_tls = match &node.tls {
        Some(t) => {
            let t2 = t.clone();
            node.spawn_loop(async move {
                loop {
                    tokio::time::sleep(timing::TLS_RELOAD).await;
                    t2.reload();
                }
            });
            Some(t.server_config()?)
        }
        None => None,
    };
    let peer = server(peer_l, http::peer_router(node.clone()), "peer", peer_tls);
    let api = server(api_l, http::api_router(node.clone()), "api", None);
    let mirror = server(mirror_l, mirror::router(node.clone()), "mirror", None);
    let tasks = node.tasks.clone();
    let done = tokio::spawn(async move {
        let stopped_at = std::sync::Arc::new(std::sync::OnceLock::new());
        let mark = stopped_at.clone();
        let servers = async { tokio::join!(peer, api, mirror) };
        tokio::pin!(servers);
        // Serve until stopped; then give transfers in progress `drain`.
        let results = tokio::select! {
            r = &mut servers => Some(r),
            _ = async {
                stopped(stop_rx).await;
                let _ = mark.set(tokio::time::Instant::now());
                tokio::time::sleep(drain).await;
            } => None,
        };
        match results {
            Some(_) => {}
            None => tracing::warn!(
                drain_ms = drain.as_millis() as u64,
                "drain time is up; dropping transfers still running"
            ),
        }
        // Work the servers no longer wait for (flights for peers,
        // replication, recovery reads) gets what is left of the drain.
        let since = stopped_at
            .get()
            .map_or(std::time::Duration::ZERO, |t| t.elapsed());
        tasks.close();
        let left = drain.saturating_sub(since);
        if tokio::time::timeout(left, tasks.wait()).await.is_err() {
            tracing::warn!(tasks = tasks.len(), "stopping with tasks still running");
        }
        // Gossip has announced the leave by now; its thread goes last.
        drop(gossip_thread);
    });
    Ok(Running {
        peer: listen,
        api: api_listen,
        mirror: mirror_listen,
        node,
        stop: Some(stop),
        done,
    })
}
