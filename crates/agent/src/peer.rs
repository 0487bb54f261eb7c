//! The peer client: one pooled HTTP/1.1 client for every peer, with
//! per-peer bounded concurrency, adaptive timeouts and a circuit breaker.
//!
//! Timeouts follow each peer's observed round trip (time to response
//! headers, which peers send at once): `base = srtt + 4·rttvar`, as TCP
//! does for its retransmission timer; connect gets `3·base`, the first
//! byte `4·base + 100 ms`, silence inside a body `4·base + 1 s` (peers send
//! keepalives every 500 ms), each clamped to the configured floor and
//! ceiling. A peer never heard from gets the ceilings. A silent body
//! fails only when the peer is silent on every stream and misses a
//! health probe too ([`FrameStream::next`]).

use crate::config::Timeouts;
use crate::metrics::{Metrics, PeerLabels};
use crate::proto::{Decoder, Failure, Frame, ProtoError};
use bytes::Bytes;
use http::{Request, StatusCode, Uri};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

mod breaker;
pub use breaker::Breaker;

/// Why a peer attempt failed.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum PeerError {
    /// The breaker is open: skipped without a request.
    #[error("breaker open")]
    BreakerOpen,
    /// Too many requests to this peer already, and none finished within
    /// the first-byte timeout.
    #[error("peer busy (local in-flight limit)")]
    Busy,
    /// Could not connect, and was told so quickly (refused).
    #[error("connect: {0}")]
    Connect(String),
    /// Could not connect, and finding out took at least half the connect
    /// timeout (the timeout itself, or a host the kernel gave up on):
    /// as costly as any timeout, so it opens the breaker at once.
    #[error("connect: {0}")]
    ConnectSlow(String),
    /// No response headers in time.
    #[error("no response within {0:?}")]
    Timeout(Duration),
    /// The peer answered with an error status.
    #[error("status {0}")]
    Status(u16),
    /// The peer holds nothing of the kind (a 404: a peek or a stat that
    /// found no copy).
    #[error("not cached")]
    NotCached,
    /// Silence inside the body for too long.
    #[error("stalled for {0:?}")]
    Stall(Duration),
    /// A chunk failed its checksum, or the framing broke.
    #[error("corrupt: {0}")]
    Corrupt(String),
    /// The body ended or failed mid-stripe.
    #[error("stream broke: {0}")]
    Broken(String),
    /// The peer gave up and said why.
    #[error("peer error: {0}")]
    Remote(Failure),
}

impl PeerError {
    /// The metric label for this failure.
    pub fn kind(&self) -> &'static str {
        match self {
            PeerError::BreakerOpen => "breaker_open",
            PeerError::Busy => "busy",
            PeerError::Connect(_) => "connect",
            PeerError::ConnectSlow(_) => "connect_timeout",
            PeerError::Timeout(_) => "timeout",
            PeerError::Status(_) => "status",
            PeerError::NotCached => "not_cached",
            PeerError::Stall(_) => "stall",
            PeerError::Corrupt(_) => "corrupt",
            PeerError::Broken(_) => "broken",
            PeerError::Remote(_) => "remote",
        }
    }

    /// Whether the peer itself looks unreachable (the case for a relay).
    pub fn unreachable(&self) -> bool {
        matches!(
            self,
            PeerError::Connect(_)
                | PeerError::ConnectSlow(_)
                | PeerError::Timeout(_)
                | PeerError::Stall(_)
        )
    }
}

/// Round-trip estimate (RFC 6298 smoothing).
#[derive(Clone, Copy, Debug, Default)]
struct Rtt {
    srtt: Option<Duration>,
    rttvar: Duration,
}

impl Rtt {
    fn sample(&mut self, r: Duration) {
        match self.srtt {
            None => {
                self.srtt = Some(r);
                self.rttvar = r / 2;
            }
            Some(s) => {
                let diff = s.abs_diff(r);
                self.rttvar = self.rttvar * 3 / 4 + diff / 4;
                self.srtt = Some(s * 7 / 8 + r / 8);
            }
        }
    }

    fn base(&self) -> Option<Duration> {
        self.srtt.map(|s| s + self.rttvar * 4)
    }
}

/// What the client knows of one peer.
pub struct PeerState {
    rtt: Mutex<Rtt>,
    breaker: Mutex<Breaker>,
    inflight: Arc<Semaphore>,
    /// When a frame last came from the peer on any stream.
    heard: Mutex<Instant>,
}

impl PeerState {
    fn hear(&self) {
        *self.heard.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
    }

    fn silent_for(&self) -> Duration {
        self.heard
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .elapsed()
    }
}

fn clamp(d: Duration, floor_ms: u64, ceiling_ms: u64) -> Duration {
    d.clamp(
        Duration::from_millis(floor_ms),
        Duration::from_millis(ceiling_ms),
    )
}

struct Shared {
    peers: Mutex<HashMap<SocketAddr, Arc<PeerState>>>,
    /// Every peer's samples smoothed together: the estimate for a peer
    /// not heard from yet, so that a fresh node does not wait the full
    /// connect ceiling on each dead peer its first roster still lists.
    fleet: Mutex<Rtt>,
    timeouts: Timeouts,
    inflight: usize,
}

impl Shared {
    fn state(&self, addr: SocketAddr) -> Arc<PeerState> {
        let mut peers = self.peers.lock().unwrap_or_else(|p| p.into_inner());
        peers
            .entry(addr)
            .or_insert_with(|| {
                Arc::new(PeerState {
                    rtt: Mutex::new(Rtt::default()),
                    breaker: Mutex::new(Breaker::new(
                        self.timeouts.breaker_failures,
                        Duration::from_millis(self.timeouts.breaker_cooldown_ms),
                    )),
                    inflight: Arc::new(Semaphore::new(self.inflight)),
                    heard: Mutex::new(Instant::now()),
                })
            })
            .clone()
    }

    /// Adds a round-trip sample for a peer and for the fleet.
    fn sample(&self, st: &PeerState, rtt: Duration) {
        st.rtt.lock().unwrap_or_else(|p| p.into_inner()).sample(rtt);
        self.fleet
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .sample(rtt);
    }

    /// (connect, first byte, stall) timeouts for a peer.
    fn timeouts(&self, st: &PeerState) -> (Duration, Duration, Duration) {
        let t = &self.timeouts;
        let own = st.rtt.lock().unwrap_or_else(|p| p.into_inner()).base();
        let base = own.or_else(|| self.fleet.lock().unwrap_or_else(|p| p.into_inner()).base());
        match base {
            None => (
                Duration::from_millis(t.connect_ceiling_ms),
                Duration::from_millis(t.first_byte_ceiling_ms),
                Duration::from_millis(t.stall_ceiling_ms),
            ),
            Some(b) => (
                clamp(b * 3, t.connect_floor_ms, t.connect_ceiling_ms),
                clamp(
                    b * 4 + crate::timing::FIRST_BYTE_SLACK,
                    t.first_byte_floor_ms,
                    t.first_byte_ceiling_ms,
                ),
                clamp(
                    b * 4 + crate::timing::STALL_SLACK,
                    t.stall_floor_ms,
                    t.stall_ceiling_ms,
                ),
            ),
        }
    }
}

/// A connector that applies each peer's adaptive connect timeout.
#[derive(Clone)]
struct Connector {
    http: HttpConnector,
    shared: Arc<Shared>,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl tower_service::Service<Uri> for Connector {
    type Response = <HttpConnector as tower_service::Service<Uri>>::Response;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.http.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let addr = uri
            .authority()
            .and_then(|a| a.as_str().parse::<SocketAddr>().ok());
        let limit = match addr {
            Some(a) => self.shared.timeouts(&self.shared.state(a)).0,
            None => Duration::from_millis(self.shared.timeouts.connect_ceiling_ms),
        };
        let connecting = self.http.call(uri);
        Box::pin(async move {
            let started = Instant::now();
            let result: Result<_, BoxError> = match tokio::time::timeout(limit, connecting).await {
                Ok(Ok(connection)) => Ok(connection),
                Ok(Err(e)) if started.elapsed() < limit / 2 => Err(e.into()),
                Ok(Err(e)) => Err(Box::new(SlowConnect(format!(
                    "{e} after {:?}",
                    started.elapsed()
                )))),
                Err(_) => Err(Box::new(SlowConnect(format!(
                    "connect timed out after {limit:?}"
                )))),
            };
            result
        })
    }
}

/// A connect failure that took long to learn of (see
/// [`PeerError::ConnectSlow`]).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct SlowConnect(String);

/// The pooled client every request to a peer goes through.
#[derive(Clone)]
pub struct PeerClient {
    client: Client<HttpsConnector<Connector>, Empty<Bytes>>,
    shared: Arc<Shared>,
    token: Option<String>,
    /// `https` with peer TLS, else `http`.
    scheme: &'static str,
    metrics: Arc<Metrics>,
}

/// An open stripe response from a peer.
pub struct FrameStream {
    body: Incoming,
    decoder: Decoder,
    stall: Duration,
    /// How long the stream may stay silent while the peer is heard from
    /// on other streams or answers probes (the stall ceiling).
    patience: Duration,
    state: Arc<PeerState>,
    addr: SocketAddr,
    client: PeerClient,
    _permit: OwnedSemaphorePermit,
}

impl PeerClient {
    /// A client with the given bounds; `token` is sent to every peer,
    /// over TLS with `tls` (the node's certificate, the cluster CA).
    pub fn new(
        timeouts: Timeouts,
        inflight: usize,
        token: Option<String>,
        tls: Option<Arc<rustls::ClientConfig>>,
        metrics: Arc<Metrics>,
    ) -> Self {
        let shared = Arc::new(Shared {
            peers: Mutex::new(HashMap::new()),
            fleet: Mutex::new(Rtt::default()),
            timeouts,
            inflight,
        });
        let mut http = HttpConnector::new();
        http.set_nodelay(true);
        http.enforce_http(false);
        let scheme = if tls.is_some() { "https" } else { "http" };
        // Without TLS the config is never used: every URL is http.
        let config = tls.unwrap_or_else(|| {
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let plain = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map(|b| {
                    b.with_root_certificates(rustls::RootCertStore::empty())
                        .with_no_client_auth()
                });
            Arc::new(plain.unwrap_or_else(|_| {
                rustls::ClientConfig::builder()
                    .with_root_certificates(rustls::RootCertStore::empty())
                    .with_no_client_auth()
            }))
        });
        let connector = HttpsConnectorBuilder::new()
            .with_tls_config((*config).clone())
            .https_or_http()
            .enable_http1()
            .wrap_connector(Connector {
                http,
                shared: shared.clone(),
            });
        let client = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(inflight)
            .pool_idle_timeout(crate::timing::PEER_POOL_IDLE)
            .build(connector);
        PeerClient {
            client,
            shared,
            token,
            scheme,
            metrics,
        }
    }

    /// Whether `addr`'s breaker lets a request through now.
    pub fn available(&self, addr: SocketAddr) -> bool {
        let st = self.shared.state(addr);
        let b = st.breaker.lock().unwrap_or_else(|p| p.into_inner());
        b.would_allow(Instant::now())
    }

    /// Peers whose breaker is open now.
    pub fn open_breakers(&self) -> Vec<SocketAddr> {
        let now = Instant::now();
        let peers = self.shared.peers.lock().unwrap_or_else(|p| p.into_inner());
        let mut open: Vec<SocketAddr> = peers
            .iter()
            .filter(|(_, st)| {
                !st.breaker
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .would_allow(now)
            })
            .map(|(addr, _)| *addr)
            .collect();
        open.sort();
        open
    }

    /// Records a round trip to `addr` measured outside this client (the
    /// roster pull when joining), so the first stripe requests of a new
    /// node already have timeouts sized for this network.
    pub fn observe(&self, addr: SocketAddr, rtt: Duration) {
        self.shared.sample(&self.shared.state(addr), rtt);
    }

    /// Current (connect, first byte, stall) timeouts for `addr`.
    pub fn timeouts_for(&self, addr: SocketAddr) -> (Duration, Duration, Duration) {
        self.shared.timeouts(&self.shared.state(addr))
    }

    fn record(&self, addr: SocketAddr, st: &PeerState, result: Result<(), &PeerError>) {
        let now = Instant::now();
        let mut b = st.breaker.lock().unwrap_or_else(|p| p.into_inner());
        match result {
            Ok(()) => b.success(),
            Err(e) => {
                self.metrics.peer_failure(e.kind());
                match e {
                    // The peer answered: it is up, whatever it holds. A
                    // half-open breaker's probe must close it here, or it
                    // would stay half-open and skip the peer for good.
                    PeerError::NotCached => b.success(),
                    PeerError::BreakerOpen | PeerError::Busy => {}
                    PeerError::Remote(_) | PeerError::Status(_) => b.failure(now, false),
                    other => b.failure(
                        now,
                        matches!(
                            other,
                            PeerError::ConnectSlow(_) | PeerError::Timeout(_) | PeerError::Stall(_)
                        ),
                    ),
                }
            }
        }
        let open = i64::from(!b.would_allow(now));
        self.metrics
            .breaker_open
            .get_or_create(&PeerLabels {
                peer: addr.to_string(),
            })
            .set(open);
    }

    /// The breaker's leave and a slot of `addr`'s in-flight limit, with
    /// the time the request may take to its headers and the stall timeout
    /// of its body.
    async fn begin(
        &self,
        addr: SocketAddr,
        deadline: Instant,
    ) -> Result<(Arc<PeerState>, OwnedSemaphorePermit, Duration, Duration), PeerError> {
        let st = self.shared.state(addr);
        // The slot first: a half-open breaker's probe, once taken, must
        // be sent, or nothing would ever close or reopen the breaker.
        // When every slot is taken, wait for one up to the first-byte
        // timeout: a deep read-ahead queues behind its own requests rather
        // than giving up on a good peer (and sending a stand-in to the
        // origin).
        let permit = match st.inflight.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                let (_, first_byte, _) = self.shared.timeouts(&st);
                let wait = first_byte.min(deadline.saturating_duration_since(Instant::now()));
                match tokio::time::timeout(wait, st.inflight.clone().acquire_owned()).await {
                    Ok(Ok(p)) => p,
                    _ => {
                        self.record(addr, &st, Err(&PeerError::Busy));
                        return Err(PeerError::Busy);
                    }
                }
            }
        };
        let now = Instant::now();
        let allowed = st
            .breaker
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .allow(now);
        if !allowed {
            self.metrics.peer_failure("breaker_open");
            return Err(PeerError::BreakerOpen);
        }
        let (connect, first_byte, stall) = self.shared.timeouts(&st);
        let limit = (connect + first_byte).min(deadline.saturating_duration_since(now));
        Ok((st, permit, limit, stall))
    }

    /// Sends the request `query` to `path` on the peer at `addr` and
    /// returns its frame stream once headers arrive, all within
    /// `deadline`. The stripe endpoint's client call.
    pub async fn open(
        &self,
        addr: SocketAddr,
        path: &str,
        query: &str,
        deadline: Instant,
    ) -> Result<FrameStream, PeerError> {
        let (st, permit, limit, stall) = self.begin(addr, deadline).await?;
        let sent = Instant::now();
        match self.request(addr, path, query, limit).await {
            Ok(resp) => {
                self.shared.sample(&st, sent.elapsed());
                Ok(FrameStream {
                    body: resp.into_body(),
                    decoder: Decoder::default(),
                    stall,
                    patience: Duration::from_millis(self.shared.timeouts.stall_ceiling_ms)
                        .max(stall),
                    state: st,
                    addr,
                    client: self.clone(),
                    _permit: permit,
                })
            }
            Err(e) => {
                self.record(addr, &st, Err(&e));
                Err(e)
            }
        }
    }

    /// Sends a short request (`query` to `path`) to the peer at `addr`
    /// under the same breaker, limit and timeouts as a stripe, within
    /// `limit`, and returns the answer once its headers are in; the body,
    /// if it matters, is the caller's to read. A 404 is
    /// [`PeerError::NotCached`]: the peer holds nothing of the kind.
    pub async fn call(
        &self,
        addr: SocketAddr,
        path: &str,
        query: &str,
        limit: Duration,
    ) -> Result<http::Response<Incoming>, PeerError> {
        let (st, _permit, limit, _) = self.begin(addr, Instant::now() + limit).await?;
        let sent = Instant::now();
        let result = self.request(addr, path, query, limit).await;
        if result.is_ok() {
            self.shared.sample(&st, sent.elapsed());
        }
        self.record(addr, &st, result.as_ref().map(|_| ()));
        result
    }

    /// Whether the peer answers `/healthz` within twice its connect
    /// timeout (a connection and one round trip), outside its breaker and
    /// in-flight limit: the check a silent stream makes before it gives
    /// up on the peer. An answer counts as hearing from the peer.
    async fn alive(&self, addr: SocketAddr, st: &PeerState) -> bool {
        let (connect, _, _) = self.shared.timeouts(st);
        let ok = self
            .request(addr, "/healthz", "", connect * 2)
            .await
            .is_ok();
        if ok {
            st.hear();
        }
        ok
    }

    async fn request(
        &self,
        addr: SocketAddr,
        path: &str,
        query: &str,
        limit: Duration,
    ) -> Result<http::Response<Incoming>, PeerError> {
        let scheme = self.scheme;
        let uri = if query.is_empty() {
            format!("{scheme}://{addr}{path}")
        } else {
            format!("{scheme}://{addr}{path}?{query}")
        };
        let mut builder = Request::get(&uri);
        if let Some(t) = &self.token {
            builder = builder.header(http::header::AUTHORIZATION, format!("Bearer {t}"));
        }
        let request = builder
            .body(Empty::new())
            .map_err(|e| PeerError::Connect(format!("building request: {e}")))?;
        let resp = match tokio::time::timeout(limit, self.client.request(request)).await {
            Err(_) => return Err(PeerError::Timeout(limit)),
            Ok(Err(e)) if e.is_connect() => {
                let source = std::error::Error::source(&e);
                let cause = source.map_or(e.to_string(), |s| s.to_string());
                if source.is_some_and(|s| s.is::<SlowConnect>()) {
                    return Err(PeerError::ConnectSlow(cause));
                }
                return Err(PeerError::Connect(cause));
            }
            Ok(Err(e)) => return Err(PeerError::Broken(e.to_string())),
            Ok(Ok(resp)) => resp,
        };
        match resp.status() {
            StatusCode::OK | StatusCode::PARTIAL_CONTENT | StatusCode::ACCEPTED => Ok(resp),
            StatusCode::NOT_FOUND => Err(PeerError::NotCached),
            s => Err(PeerError::Status(s.as_u16())),
        }
    }
}

impl FrameStream {
    /// The next frame, within the stall timeout. `Ok(None)` only after an
    /// end frame has been returned; a body that ends earlier is an error.
    ///
    /// A stream silent for the stall timeout fails when the peer has sent
    /// nothing on any stream for as long and does not answer a health
    /// probe either (it is dead, stopped or cut off). While the peer's
    /// other streams deliver, or it answers the probe, the silence is one
    /// congested TCP flow sitting out retransmission timeouts, and the
    /// stream may wait up to the stall ceiling.
    pub async fn next(&mut self) -> Result<Frame, PeerError> {
        let mut silent = Duration::ZERO;
        loop {
            match self.decoder.next_frame() {
                Ok(Some(frame)) => return Ok(frame),
                Ok(None) => {}
                Err(ProtoError::CorruptChunk) => {
                    return Err(self.fail(PeerError::Corrupt("chunk checksum mismatch".into())));
                }
                Err(e) => return Err(self.fail(PeerError::Corrupt(e.to_string()))),
            }
            match tokio::time::timeout(self.stall, self.body.frame()).await {
                Err(_) => {
                    silent += self.stall;
                    let dead = silent >= self.patience
                        || (self.state.silent_for() >= self.stall
                            && !self.client.alive(self.addr, &self.state).await);
                    if dead {
                        return Err(self.fail(PeerError::Stall(silent)));
                    }
                }
                Ok(None) => {
                    return Err(
                        self.fail(PeerError::Broken("body ended before the end frame".into()))
                    );
                }
                Ok(Some(Err(e))) => return Err(self.fail(PeerError::Broken(e.to_string()))),
                Ok(Some(Ok(f))) => {
                    silent = Duration::ZERO;
                    self.state.hear();
                    if let Ok(data) = f.into_data() {
                        self.decoder.push(data);
                    }
                }
            }
        }
    }

    /// Records a failure mid-stream against the peer and returns it.
    pub fn fail(&self, e: PeerError) -> PeerError {
        self.client.record(self.addr, &self.state, Err(&e));
        e
    }

    /// Records a clean finish.
    pub fn finish_ok(&self) {
        self.client.record(self.addr, &self.state, Ok(()));
    }

    /// The peer's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A peer that answers 404 to everything (it holds nothing).
    async fn empty_peer() -> SocketAddr {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(l, axum::Router::new()).await });
        addr
    }

    /// A peer that opens every stripe body and never sends a frame; its
    /// `/healthz` answers when `healthy`, and hangs otherwise (a process
    /// that is stopped or a host that is cut off looks the same).
    async fn silent_peer(healthy: bool) -> SocketAddr {
        use axum::routing::get;
        let health = if healthy {
            get(|| async { "ok\n" })
        } else {
            get(std::future::pending::<&'static str>)
        };
        let silent = get(|| async {
            axum::body::Body::from_stream(futures_util::stream::pending::<
                Result<Bytes, std::io::Error>,
            >())
        });
        let app = axum::Router::new()
            .route("/stripe", silent)
            .route("/healthz", health);
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(l, app).await });
        addr
    }

    /// How long a silent stripe stream of `peer` lasted before it failed,
    /// and its stall timeout.
    async fn silence_until_failure(peer: SocketAddr) -> (Duration, Duration) {
        let timeouts = Timeouts {
            stall_floor_ms: 200,
            stall_ceiling_ms: 2500,
            ..Timeouts::default()
        };
        let client = PeerClient::new(timeouts, 4, None, None, Arc::new(Metrics::default()));
        // A peer heard from before (as after the roster pull when joining):
        // one never heard from gets the ceilings.
        client.observe(peer, Duration::from_millis(1));
        let deadline = Instant::now() + Duration::from_secs(30);
        let stall = client.timeouts_for(peer).2;
        let mut stream = client.open(peer, "/stripe", "", deadline).await.unwrap();
        assert!(stall < Duration::from_millis(2500), "{stall:?}");
        match stream.next().await {
            Err(PeerError::Stall(silent)) => (silent, stall),
            other => panic!("expected a stall, got {:?}", other.map(|_| ())),
        }
    }

    /// A stream that falls silent is given up on after one stall timeout
    /// when its peer does not answer a health probe, and only at the stall
    /// ceiling when it does (a live peer behind one congested flow).
    #[tokio::test]
    async fn a_silent_stream_waits_out_a_live_peer_but_not_a_dead_one() {
        let (silent, stall) = silence_until_failure(silent_peer(false).await).await;
        assert_eq!(silent, stall, "a peer that does not answer fails at once");
        let (silent, stall) = silence_until_failure(silent_peer(true).await).await;
        assert!(
            silent >= Duration::from_millis(2500) && silent > stall,
            "a peer that answers is waited out to the ceiling: {silent:?} (stall {stall:?})"
        );
    }

    /// A probe that finds nothing still shows the peer is up: the breaker
    /// closes instead of staying half-open (and the peer skipped) for good.
    #[tokio::test]
    async fn a_not_cached_answer_closes_a_half_open_breaker() {
        let timeouts = Timeouts {
            breaker_failures: 1,
            breaker_cooldown_ms: 20,
            ..Timeouts::default()
        };
        let client = PeerClient::new(timeouts, 4, None, None, Arc::new(Metrics::default()));
        let addr = empty_peer().await;
        let st = client.shared.state(addr);
        client.record(addr, &st, Err(&PeerError::Status(500)));
        assert!(!client.available(addr), "one failure opens it");
        tokio::time::sleep(Duration::from_millis(40)).await;
        let probe = client
            .call(addr, "/peer/v1/stat", "", Duration::from_secs(2))
            .await;
        assert!(
            matches!(probe, Err(PeerError::NotCached)),
            "{:?}",
            probe.err()
        );
        assert!(client.available(addr), "the probe closed the breaker");
    }
}
