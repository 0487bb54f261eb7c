//! The accept loop of each of the agent's HTTP servers (peer, local API,
//! OCI mirror), which owns connection hygiene: a bounded number of open
//! connections per port (one more is answered 503 and closed), a time
//! limit on a request's headers that also closes idle keep-alive
//! connections, TCP_NODELAY on every connection, and a graceful stop.
//! Request bodies are bounded by the handlers (axum's default limit on
//! extracted bodies; the peer and mirror endpoints take none). With TLS
//! (the peer port with `tls` set) the handshake must finish within the
//! header time limit too, and each request carries whether its connection
//! presented a certificate the cluster CA signed ([`PeerCertificate`]).

use crate::metrics::{Metrics, PortLabels};
use crate::tls::PeerCertificate;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;

/// What one port's server allows its clients.
#[derive(Clone, Debug)]
pub struct Hygiene {
    /// The port's name in metrics and logs: `peer`, `api` or `mirror`.
    pub port: &'static str,
    /// Connections open at once.
    pub max_connections: usize,
    /// Time to send a request's headers, and to stay idle between
    /// requests (and to finish a TLS handshake).
    pub header_read_timeout: Duration,
    /// TLS for every connection, when set.
    pub tls: Option<Arc<rustls::ServerConfig>>,
}

/// The answer to a connection past the limit.
const REFUSAL: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\n\
content-type: text/plain\r\nretry-after: 1\r\nconnection: close\r\n\
content-length: 21\r\n\r\ntoo many connections\n";

/// How long a refused connection may take to be told.
const REFUSAL_WRITE: Duration = Duration::from_secs(1);

/// Serves `router` on `listener` until `stop` completes, then waits for
/// the connections in progress to finish (the caller bounds that wait).
pub async fn serve(
    listener: TcpListener,
    router: axum::Router,
    hygiene: Hygiene,
    metrics: Arc<Metrics>,
    stop: impl Future<Output = ()>,
) {
    let slots = Arc::new(Semaphore::new(hygiene.max_connections));
    let labels = PortLabels {
        port: hygiene.port.to_string(),
    };
    let open = metrics.connections_open.get_or_create(&labels).clone();
    let refused = metrics.connections_refused.get_or_create(&labels).clone();
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(hygiene.header_read_timeout);
    let graceful = GracefulShutdown::new();
    tokio::pin!(stop);
    loop {
        let tcp = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((tcp, _)) => tcp,
                Err(e) => {
                    // Out of file descriptors, or a connection reset
                    // before it was accepted: back off a little.
                    tracing::debug!(port = hygiene.port, "accept: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut stop => break,
        };
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!("TCP_NODELAY: {e}");
        }
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            refused.inc();
            // A TLS client would read a plain answer as a protocol
            // error: it is only closed.
            if hygiene.tls.is_none() {
                tokio::spawn(refuse(tcp));
            }
            continue;
        };
        let open = open.clone();
        open.inc();
        let Some(tls) = hygiene.tls.clone() else {
            let conn =
                http.serve_connection(TokioIo::new(tcp), TowerToHyperService::new(router.clone()));
            let conn = graceful.watch(conn);
            tokio::spawn(async move {
                if let Err(e) = conn.await {
                    tracing::debug!("connection: {e}");
                }
                open.dec();
                drop(slot);
            });
            continue;
        };
        let (http, router, watcher) = (http.clone(), router.clone(), graceful.watcher());
        let limit = hygiene.header_read_timeout;
        tokio::spawn(async move {
            let handshake = tokio::time::timeout(limit, TlsAcceptor::from(tls).accept(tcp)).await;
            match handshake {
                Ok(Ok(stream)) => {
                    let verified =
                        PeerCertificate(stream.get_ref().1.peer_certificates().is_some());
                    let router = router.layer(axum::Extension(verified));
                    let conn = http
                        .serve_connection(TokioIo::new(stream), TowerToHyperService::new(router));
                    if let Err(e) = watcher.watch(conn).await {
                        tracing::debug!("connection: {e}");
                    }
                }
                Ok(Err(e)) => tracing::info!("TLS handshake refused: {e}"),
                Err(_) => tracing::debug!("TLS handshake timed out"),
            }
            open.dec();
            drop(slot);
        });
    }
    graceful.shutdown().await;
}

/// Tells a connection past the limit so, then reads and drops what the
/// client sent (briefly), so closing does not reset the connection before
/// the client has read the answer.
async fn refuse(mut tcp: TcpStream) {
    let told = tokio::time::timeout(REFUSAL_WRITE, async {
        tcp.write_all(REFUSAL).await?;
        tcp.shutdown().await?;
        let mut sink = [0u8; 4096];
        while tcp.read(&mut sink).await? > 0 {}
        Ok::<_, std::io::Error>(())
    })
    .await;
    if let Ok(Err(e)) = told {
        tracing::debug!("refusing a connection: {e}");
    }
}
