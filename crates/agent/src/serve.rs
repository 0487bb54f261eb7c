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
use crate::proto::{Failure, Frame, StripeRequest};
use shoal_placement::NodeId;
use std::collections::HashSet;
use std::fs::File;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;

mod pieced;
mod plan;
mod writer;
use plan::{Attempt, plan};
use writer::Writer;

/// Who asked for a stripe, which decides what flight it may join.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Asker {
    /// This node's own client.
    Local,
    /// A rack peer, for one piece this node relays (`StripeRequest::rack`).
    Rack,
    /// A node along a path (or a stand-in's or a relay's requester).
    Hop,
}

impl Node {
    /// The design's `serve(K, path, fallbacks)`: starts serving `req` (a
    /// stripe with the rest of its path and its fallbacks) from the store,
    /// a flight in progress, the next hop or the origin, and returns a
    /// channel of frames from `req.from` to `req.end()`. `local` marks a
    /// request from this node's own client, which may fall back to the
    /// origin when every peer fails.
    pub async fn serve(
        self: &Arc<Self>,
        req: StripeRequest,
        local: bool,
    ) -> Result<mpsc::Receiver<Frame>, ServeError> {
        let key = req.stripe.entry_key();
        let (from, to) = (req.from, req.end());
        let (tx, rx) = mpsc::channel(2);
        if self.store.contains(&key) {
            let store = self.store.clone();
            let lease = tokio::task::spawn_blocking(move || store.get(&key))
                .await
                .map_err(|e| ServeError::Internal(e.to_string()))?;
            match lease {
                Ok(Some(lease)) => {
                    self.metrics.served(Source::Store, to.saturating_sub(from));
                    let store = self.store.clone();
                    let on_corrupt = move || {
                        tracing::error!(
                            key = hex::encode(key.0),
                            "stored stripe is corrupt; removing it"
                        );
                        let _ = store.remove(&key);
                    };
                    // Peers check the whole stripe themselves; see `endpoints::suspect`.
                    self.spawn(pump_lease(lease, from, to, tx, on_corrupt, local));
                    return Ok(rx);
                }
                Ok(None) => {}
                Err(e) => tracing::warn!("store read failed, fetching instead: {e}"),
            }
        }
        if req.cached {
            return Err(ServeError::NotCached);
        }
        let asker = match (local, req.rack) {
            (true, _) => Asker::Local,
            (false, true) => Asker::Rack,
            (false, false) => Asker::Hop,
        };
        let (flight, joined, req) = self.flight_for(req, asker)?;
        if joined {
            self.metrics.singleflight_joins.inc();
        } else {
            self.spawn(run_flight(self.clone(), flight.clone(), req, local));
        }
        self.spawn(pump_flight(flight, from, to, tx));
        Ok(rx)
    }

    /// The flight that serves `req`: one in progress it may join, or a new
    /// one (with the request it fills, and whether it was joined).
    ///
    /// Waits must stay acyclic. Ranks order the flights of a path: a new
    /// flight ranks below its requester (and no higher than its path is
    /// long), and a hop may join one only from above. A pieced flight
    /// (one that waits on rack peers) is never joined by a hop, so no path
    /// ever waits on a rack relay: a hop that finds one starts this node's
    /// path flight beside it, which later hops join. A rack peer joins the
    /// path flight if there is one, else the pieced one, claiming its piece
    /// for this node's path (refused when that flight already waits on a
    /// rack peer for the piece: the two views disagree on the relay, and
    /// the asker goes elsewhere).
    fn flight_for(
        &self,
        mut req: StripeRequest,
        asker: Asker,
    ) -> Result<(Arc<Flight>, bool, StripeRequest), ServeError> {
        let key = req.stripe.entry_key();
        let mut flights = self.flights();
        let live = |pieced: bool| flights.get(&(key, pieced)).filter(|f| !f.failed()).cloned();
        let (path_flight, pieced) = (live(false), live(true));
        let joined = match asker {
            Asker::Rack => match (path_flight, pieced) {
                (Some(f), _) => Some(f),
                (None, Some(f)) if f.claim_path(req.from) => Some(f),
                (None, Some(_)) => return Err(ServeError::NotRelaying),
                (None, None) => None,
            },
            Asker::Local => path_flight.or(pieced).filter(|f| f.rank() < req.rank),
            Asker::Hop => path_flight.filter(|f| f.rank() < req.rank),
        };
        if let Some(f) = joined {
            return Ok((f, true, req));
        }
        let claim = (asker == Asker::Rack).then_some(req.from);
        if asker == Asker::Rack {
            // The relay fetches along its own path, as for its own client.
            let m = self.membership.load();
            let path = self.path_to(&m, req.stripe.key());
            req = StripeRequest::new(req.stripe, path.hops(), path.fallbacks(), req.ttl_ms);
        }
        let pieces = match asker {
            Asker::Hop => None,
            Asker::Local | Asker::Rack => self.piece_size_for(&req.stripe),
        };
        let rank = flight_rank(req.path.len(), req.rank);
        let f = Flight::new(req.stripe.len(), rank, pieces);
        if let Some(from) = claim {
            f.claim_path(from);
        }
        let slot = (key, pieces.is_some());
        if live(slot.1).is_none() {
            flights.insert(slot, f.clone());
        }
        req.from = 0;
        req.to = None;
        Ok((f, false, req))
    }
}

/// The rank of a flight this node starts for a request of rank `asked`
/// with `hops` hops left: below the requester's, and at most twice the
/// hops, because a chain may grow by one node per hop (a relay around a
/// hop this node cannot reach asks that hop for it), and each node on it
/// must still rank above the flight it joins at the next (the owner's
/// flight, of rank 0, is then joinable by every chain that reaches it).
fn flight_rank(hops: usize, asked: u8) -> u8 {
    (hops.saturating_mul(2).min(usize::from(u8::MAX)) as u8).min(asked.saturating_sub(1))
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
            tracing::warn!(stripe = req.stripe.index, path = ?req.path, fallbacks = ?req.fallbacks, relay = req.relay, local, "fetch failed: {}", e.message);
            flight.fail(e);
        }
    }
    node.refresh_store_metrics();
    let slot = (key, flight.pieces().is_some());
    let mut flights = node.flights();
    if flights.get(&slot).is_some_and(|f| Arc::ptr_eq(f, &flight)) {
        flights.remove(&slot);
    }
}

/// Fetches the stripe into a store reservation (or scratch space) and
/// verifies it. Returns its checksum and whether this node should push
/// replicas: the stripe came from the origin here and the store took it.
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
    let file = Arc::new(clone(pending.file())?);
    let deadline = Instant::now() + Duration::from_millis(req.ttl_ms);
    let (claimed, ours) = match flight.pieces() {
        Some(size) => {
            let claimed = pieced::fetch(node, flight, req, &file, deadline, local, size).await?;
            (claimed, writer::checksum_of(file, len).await?)
        }
        None => {
            let mut w = Writer::whole(file);
            let claimed = fetch(node, flight, req, &mut w, deadline, local, len).await?;
            w.flush(flight).await?;
            (claimed, w.checksum())
        }
    };
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
    let mut admitted = false;
    if pending.is_reserved() {
        let store = node.store.clone();
        let committed =
            tokio::task::spawn_blocking(move || store.commit(pending, shoal_store::Checksum(ours)))
                .await;
        match committed {
            Ok(Ok(())) => admitted = true,
            Ok(Err(e)) => tracing::warn!("stripe verified but not admitted: {e}"),
            Err(e) => tracing::warn!("stripe verified but not admitted: {e}"),
        }
    }
    // A copy relayed through scratch space is gone: a successor told to
    // pull it from here would find nothing.
    Ok((ours, from_origin && admitted))
}

/// What a source claimed a stripe's checksum is, and who it was; `None`
/// when the last bytes came from the origin (this node is where the stripe
/// entered the cluster) or the range stopped short of the stripe's end.
type Claim = Option<([u8; 32], SocketAddr)>;

/// Runs the plan until the stripe is complete up to byte `to`.
async fn fetch(
    node: &Arc<Node>,
    flight: &Flight,
    req: &StripeRequest,
    w: &mut Writer,
    deadline: Instant,
    local: bool,
    to: u64,
) -> Result<Claim, Failure> {
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
            match origin_fill(node, flight, req, w, deadline, to).await {
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
        sub.to = (to < req.stripe.len()).then_some(to);
        let rack = m.view.same_rack(node.id, target);
        match peer_fill(node, flight, addr, &sub, w, deadline, rack).await {
            Ok(sum) => return Ok(sum.map(|s| (s, addr))),
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

/// Fills `sub.from..sub.end()` from the peer at `addr` (a member of this
/// node's rack if `rack`). Returns the stripe's checksum as the peer
/// claims it when the range reached the stripe's end.
async fn peer_fill(
    node: &Arc<Node>,
    flight: &Flight,
    addr: SocketAddr,
    sub: &StripeRequest,
    w: &mut Writer,
    deadline: Instant,
    rack: bool,
) -> Result<Option<[u8; 32]>, PeerError> {
    let mut stream = stripe::open(&node.peer_client, addr, sub, deadline).await?;
    let (len, end) = (sub.stripe.len(), sub.end());
    let source = if rack { Source::Rack } else { Source::Peer };
    loop {
        if Instant::now() >= deadline {
            return Err(stream.fail(PeerError::Broken("deadline passed mid-stripe".into())));
        }
        match stream.next().await? {
            Frame::Data(d, sum) => {
                let room = end - w.accepted();
                if d.len() as u64 > room {
                    if sub.to.is_none() {
                        return Err(stream.fail(PeerError::Corrupt(
                            "more bytes than the stripe holds".into(),
                        )));
                    }
                    // A peer that predates `to` sends on to the stripe's
                    // end: keep the verified prefix, and stop there.
                    node.metrics.served(source, room);
                    w.push(flight, &d[..room as usize], None)
                        .await
                        .map_err(|e| PeerError::Broken(e.message))?;
                    stream.finish_ok();
                    return Ok(None);
                }
                node.metrics.served(source, d.len() as u64);
                w.push(flight, &d, sum)
                    .await
                    .map_err(|e| PeerError::Broken(e.message))?;
            }
            Frame::KeepAlive => {}
            Frame::End { len: n, checksum } => {
                if n != end || w.accepted() != end {
                    return Err(stream.fail(PeerError::Broken(format!(
                        "end after {} of {end} bytes",
                        w.accepted()
                    ))));
                }
                stream.finish_ok();
                return Ok((end == len).then_some(checksum));
            }
            Frame::Error(f) => return Err(stream.fail(PeerError::Remote(f))),
        }
    }
}

/// Reads the stripe up to byte `to` from the origin, retrying transient
/// errors with backoff while the deadline allows.
async fn origin_fill(
    node: &Arc<Node>,
    flight: &Flight,
    req: &StripeRequest,
    w: &mut Writer,
    deadline: Instant,
    to: u64,
) -> Result<(), Failure> {
    let start = req.stripe.range().0;
    let end = start + to;
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

#[cfg(test)]
mod tests {
    use super::flight_rank;
    use crate::proto::LOCAL_RANK;

    /// Along any path of up to four hops, with a relay around any one of
    /// them, every request ranks above any flight the next node may have
    /// for the stripe (a flight with `h` hops left ranks at most `2h`), so
    /// it joins that flight instead of starting a second fetch.
    #[test]
    fn a_chain_with_a_relay_still_joins_the_flights_ahead() {
        for n in 1..=4usize {
            let mut asked = flight_rank(n, LOCAL_RANK);
            for k in 0..n {
                let ahead = 2 * (n - k - 1);
                assert!(ahead < usize::from(asked), "hop {k} of {n}");
                let relay = flight_rank(n - k, asked);
                assert!(ahead < usize::from(relay), "relay around hop {k} of {n}");
                asked = flight_rank(n - k - 1, asked);
            }
        }
        assert_eq!(flight_rank(0, LOCAL_RANK), 0, "the owner's flight");
        assert_eq!(flight_rank(500, 3), 2, "never above the requester");
    }
}
