//! `serve(K, path, fallbacks)`: a hit is served from the store, a stripe in
//! flight here is joined, the owner (or its stand-in) fetches from the
//! origin, and anything else is forwarded along the path. Bytes go to the
//! caller and into the store at once, chunk by chunk.

use crate::endpoints::replicate::{self, ReplicateHint};
use crate::endpoints::stripe::{self, ServeError};
use crate::endpoints::suspect;
use crate::flight::{Flight, pump_flight, pump_lease};
use crate::metrics::Source;
use crate::node::Node;
use crate::peer::PeerError;
use crate::proto::{CHUNK, ChunkSum, Failure, Frame, StripeRequest};
use bytes::{Bytes, BytesMut};
use shoal_placement::NodeId;
use std::collections::HashSet;
use std::fs::File;
use std::net::SocketAddr;
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;

mod plan;
use plan::{Attempt, plan};

impl Node {
    /// The design's `serve(K, path, fallbacks)`: starts serving `req` (a
    /// stripe with the rest of its path and its fallbacks) from the store,
    /// a flight in progress, the next hop or the origin, and returns a
    /// channel of frames from `req.from` to the end of the stripe. `local` marks a request from this node's own
    /// client, which may fall back to the origin when every peer fails.
    pub async fn serve(
        self: &Arc<Self>,
        req: StripeRequest,
        local: bool,
    ) -> Result<mpsc::Receiver<Frame>, ServeError> {
        let key = req.stripe.entry_key();
        let (tx, rx) = mpsc::channel(2);
        if self.store.contains(&key) {
            let store = self.store.clone();
            let lease = tokio::task::spawn_blocking(move || store.get(&key))
                .await
                .map_err(|e| ServeError::Internal(e.to_string()))?;
            match lease {
                Ok(Some(lease)) => {
                    self.metrics
                        .served(Source::Store, lease.len.saturating_sub(req.from));
                    let store = self.store.clone();
                    let on_corrupt = move || {
                        tracing::error!(
                            key = hex::encode(key.0),
                            "stored stripe is corrupt; removing it"
                        );
                        let _ = store.remove(&key);
                    };
                    // Peers check the whole stripe themselves; see `endpoints::suspect`.
                    self.spawn(pump_lease(lease, req.from, tx, on_corrupt, local));
                    return Ok(rx);
                }
                Ok(None) => {}
                Err(e) => tracing::warn!("store read failed, fetching instead: {e}"),
            }
        }
        if req.cached {
            return Err(ServeError::NotCached);
        }
        // A new flight ranks below its requester (and no higher than its
        // path is long); an existing one may be joined only from above.
        let rank = (req.path.len() as u8).min(req.rank.saturating_sub(1));
        let (flight, joined) = {
            let mut flights = self.flights();
            match flights.get(&key).filter(|f| !f.failed()) {
                Some(f) if f.rank() < req.rank => (f.clone(), true),
                Some(_) => (Flight::new(req.stripe.len(), rank), false),
                None => {
                    let f = Flight::new(req.stripe.len(), rank);
                    flights.insert(key, f.clone());
                    (f, false)
                }
            }
        };
        if joined {
            self.metrics.singleflight_joins.inc();
        } else {
            self.spawn(run_flight(self.clone(), flight.clone(), req.clone(), local));
        }
        self.spawn(pump_flight(flight, req.from, tx));
        Ok(rx)
    }
}

/// Fills one flight, publishes the outcome, and leaves the flights map.
async fn run_flight(node: Arc<Node>, flight: Arc<Flight>, req: StripeRequest, local: bool) {
    let key = req.stripe.entry_key();
    let started = Instant::now();
    tracing::debug!(stripe = req.stripe.index, path = ?req.path, fallbacks = ?req.fallbacks, local, "flight: start");
    match fill(&node, &flight, &req, local).await {
        Ok((checksum, from_origin)) => {
            tracing::debug!(stripe = req.stripe.index, from_origin, "flight: done");
            flight.done(checksum);
            node.metrics
                .fetch_seconds
                .observe(started.elapsed().as_secs_f64());
            if from_origin {
                replicate(&node, &req);
            }
        }
        Err(e) => {
            tracing::warn!(stripe = req.stripe.index, "fetch failed: {}", e.message);
            flight.fail(e);
        }
    }
    node.refresh_store_metrics();
    let mut flights = node.flights();
    if flights.get(&key).is_some_and(|f| Arc::ptr_eq(f, &flight)) {
        flights.remove(&key);
    }
}

/// The flight's file and running hash.
struct Writer {
    file: Arc<File>,
    written: u64,
    hasher: Option<blake3::Hasher>,
    buf: BytesMut,
}

impl Writer {
    /// Appends verified bytes, flushing whole chunks to disk, and the very
    /// first bytes at once (see [`crate::proto::FIRST_CHUNK`]). A chunk
    /// from a peer (`sum` given) is written at once and recorded with its
    /// checksum, so readers pass it on without hashing it again.
    async fn push(
        &mut self,
        flight: &Flight,
        bytes: &[u8],
        sum: Option<ChunkSum>,
    ) -> Result<(), Failure> {
        if let Some(sum) = sum {
            self.flush(flight).await?;
            flight.record_segment(self.written, bytes.len(), sum);
            self.buf.extend_from_slice(bytes);
            return self.flush(flight).await;
        }
        self.buf.extend_from_slice(bytes);
        if self.buf.len() >= CHUNK || self.written == 0 {
            self.flush(flight).await?;
        }
        Ok(())
    }

    /// Bytes accepted, written or buffered.
    fn accepted(&self) -> u64 {
        self.written + self.buf.len() as u64
    }

    /// Writes what is buffered and publishes progress.
    async fn flush(&mut self, flight: &Flight) -> Result<(), Failure> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let bytes: Bytes = self.buf.split().freeze();
        let (file, pos, hasher) = (self.file.clone(), self.written, self.hasher.take());
        let n = bytes.len() as u64;
        let hasher = tokio::task::spawn_blocking(move || {
            file.write_all_at(&bytes, pos)?;
            let mut h = hasher.unwrap_or_default();
            h.update(&bytes);
            Ok::<_, std::io::Error>(h)
        })
        .await
        .map_err(|e| Failure::retryable(e.to_string()))?
        .map_err(|e| Failure::retryable(format!("writing stripe: {e}")))?;
        self.hasher = Some(hasher);
        self.written += n;
        flight.progress(self.written);
        Ok(())
    }

    fn checksum(&self) -> [u8; 32] {
        *self
            .hasher
            .clone()
            .unwrap_or_default()
            .finalize()
            .as_bytes()
    }
}

async fn fill(
    node: &Arc<Node>,
    flight: &Flight,
    req: &StripeRequest,
    local: bool,
) -> Result<([u8; 32], bool), Failure> {
    let (key, len) = (req.stripe.entry_key(), req.stripe.len());
    let store = node.store.clone();
    let pending = tokio::task::spawn_blocking(move || {
        store.reserve(key, len).or_else(|e| {
            tracing::info!("not caching stripe ({e}); relaying it through scratch space");
            store.scratch(key, len)
        })
    })
    .await
    .map_err(|e| Failure::retryable(e.to_string()))?
    .map_err(|e| Failure::retryable(format!("no space to relay the stripe: {e}")))?;
    let clone = |f: &File| f.try_clone().map_err(|e| Failure::retryable(e.to_string()));
    flight.start(clone(pending.file())?);
    let mut w = Writer {
        file: Arc::new(clone(pending.file())?),
        written: 0,
        hasher: None,
        buf: BytesMut::new(),
    };
    let deadline = Instant::now() + Duration::from_millis(req.ttl_ms);
    let claimed = fetch(node, flight, req, &mut w, deadline, local).await?;
    w.flush(flight).await?;
    let ours = w.checksum();
    let from_origin = claimed.is_none();
    if let Some((theirs, peer)) = claimed
        && theirs != ours
    {
        suspect::report(&node.peer_client, peer, &req.stripe).await;
        return Err(Failure::retryable(format!(
            "stripe from {peer} failed its checksum"
        )));
    }
    if let Some((_, peer)) = claimed {
        node.record_source(key, peer);
    }
    if pending.is_reserved() {
        let store = node.store.clone();
        let committed =
            tokio::task::spawn_blocking(move || store.commit(pending, shoal_store::Checksum(ours)))
                .await;
        match committed {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!("stripe verified but not admitted: {e}"),
            Err(e) => tracing::warn!("stripe verified but not admitted: {e}"),
        }
    }
    Ok((ours, from_origin))
}

/// Runs the plan until the stripe is complete. Returns the checksum the
/// source claimed and who sent it, or `None` when the bytes came from the
/// origin (this node is where the stripe entered the cluster).
async fn fetch(
    node: &Arc<Node>,
    flight: &Flight,
    req: &StripeRequest,
    w: &mut Writer,
    deadline: Instant,
    local: bool,
) -> Result<Option<([u8; 32], SocketAddr)>, Failure> {
    let m = node.membership.load_full();
    let mut unreachable: HashSet<NodeId> = HashSet::new();
    let mut last = String::from("no candidate to fetch from");
    for attempt in plan(node.id, req, local) {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(Failure::retryable(format!(
                "deadline passed; last error: {last}"
            )));
        }
        let Attempt::Peer {
            target,
            path,
            fallbacks,
            relay,
            peek,
            relay_for,
        } = attempt
        else {
            match origin_fill(node, flight, req, w, deadline).await {
                Ok(()) => return Ok(None),
                Err(e) if e.fatal => return Err(e),
                Err(e) => {
                    last = e.message;
                    continue;
                }
            }
        };
        if relay_for.is_some_and(|hop| !unreachable.contains(&hop)) {
            continue; // the direct attempt did not fail for want of a link
        }
        let Some(&addr) = m.addrs.get(&target) else {
            continue;
        };
        if target == node.id || !m.view.is_alive(target) {
            continue;
        }
        let mut sub = StripeRequest::new(
            req.stripe.clone(),
            &path,
            &fallbacks,
            left.as_millis() as u64,
        );
        (sub.from, sub.cached, sub.relay, sub.rank) = (w.accepted(), peek, relay, flight.rank());
        match peer_fill(node, flight, addr, &sub, w, deadline).await {
            Ok(sum) => return Ok(Some((sum, addr))),
            Err(PeerError::Remote(f)) if f.fatal => return Err(f),
            Err(e) => {
                if e.unreachable() || e == PeerError::BreakerOpen {
                    unreachable.insert(target);
                }
                tracing::debug!(peer = %addr, "attempt failed: {e}");
                last = format!("{addr}: {e}");
            }
        }
    }
    Err(Failure::retryable(format!(
        "every candidate failed; last: {last}"
    )))
}

async fn peer_fill(
    node: &Arc<Node>,
    flight: &Flight,
    addr: SocketAddr,
    sub: &StripeRequest,
    w: &mut Writer,
    deadline: Instant,
) -> Result<[u8; 32], PeerError> {
    let mut stream = stripe::open(&node.peer_client, addr, sub, deadline).await?;
    let len = sub.stripe.len();
    loop {
        if Instant::now() >= deadline {
            return Err(stream.fail(PeerError::Broken("deadline passed mid-stripe".into())));
        }
        match stream.next().await? {
            Frame::Data(d, sum) => {
                if w.accepted() + d.len() as u64 > len {
                    return Err(stream.fail(PeerError::Corrupt(
                        "more bytes than the stripe holds".into(),
                    )));
                }
                node.metrics.served(Source::Peer, d.len() as u64);
                w.push(flight, &d, sum)
                    .await
                    .map_err(|e| PeerError::Broken(e.message))?;
            }
            Frame::KeepAlive => {}
            Frame::End { len: n, checksum } => {
                if n != len || w.accepted() != len {
                    return Err(stream.fail(PeerError::Broken(format!(
                        "end after {} of {len} bytes",
                        w.accepted()
                    ))));
                }
                stream.finish_ok();
                return Ok(checksum);
            }
            Frame::Error(f) => return Err(stream.fail(PeerError::Remote(f))),
        }
    }
}

/// Reads the rest of the stripe from the origin, retrying transient errors
/// with backoff while the deadline allows.
async fn origin_fill(
    node: &Arc<Node>,
    flight: &Flight,
    req: &StripeRequest,
    w: &mut Writer,
    deadline: Instant,
) -> Result<(), Failure> {
    let (start, end) = req.stripe.range();
    let mut backoff = crate::timing::ORIGIN_BACKOFF;
    for attempt in 0..crate::timing::ORIGIN_ATTEMPTS {
        let from = start + w.accepted();
        if from >= end {
            return Ok(());
        }
        let err = match node.origin.range(&req.stripe.object, from, end).await {
            Ok(mut body) => loop {
                match body.chunk().await {
                    Ok(Some(b)) => {
                        if w.accepted() + b.len() as u64 > end - start {
                            return Err(Failure::fatal("origin sent more bytes than asked"));
                        }
                        node.metrics.served(Source::Origin, b.len() as u64);
                        w.push(flight, &b, None).await?;
                    }
                    Ok(None) if start + w.accepted() == end => return Ok(()),
                    Ok(None) => {
                        break crate::origin::OriginError::Transport(
                            "origin body ended early".into(),
                        );
                    }
                    Err(e) => break e,
                }
            },
            Err(e) => e,
        };
        if !err.transient() {
            return Err(Failure::fatal(err.to_string()));
        }
        tracing::warn!(attempt, "origin: {err}");
        if Instant::now() + backoff >= deadline {
            return Err(Failure::retryable(err.to_string()));
        }
        tokio::time::sleep(backoff).await;
        backoff *= 2;
    }
    Err(Failure::retryable("origin kept failing"))
}

/// Pushes a stripe fresh from the origin to the first successors, so that
/// `min_copies` nodes hold it.
fn replicate(node: &Arc<Node>, req: &StripeRequest) {
    let want = node.cfg.min_copies.saturating_sub(1);
    if want == 0 {
        return;
    }
    let m = node.membership.load_full();
    let key = req.stripe.key();
    let targets: Vec<_> = m
        .view
        .successors(key, want + 1)
        .into_iter()
        .filter(|&s| s != node.id)
        .take(want)
        .filter_map(|s| m.addrs.get(&s).copied())
        .collect();
    for addr in targets {
        let hint = ReplicateHint {
            stripe: req.stripe.clone(),
            source: node.id,
            ttl_ms: node.cfg.timeouts.deadline_ms,
        };
        let node2 = node.clone();
        node.spawn(async move {
            if let Err(e) = replicate::send(&node2.peer_client, addr, &hint).await {
                tracing::debug!(peer = %addr, "replication hint failed: {e}");
            }
        });
    }
}
