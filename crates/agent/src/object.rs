//! Whole objects for this node's own clients: cut into stripes, fetched
//! through the mesh with read-ahead, streamed in order, and checked against
//! an expected digest before the last bytes are released ([`mismatch`]
//! says what happens when they do not match).

mod mismatch;
pub mod response;

use crate::node::Node;
use crate::origin::OriginError;
use crate::proto::{
    Failure, Frame, ObjectSpec, ProtoError, StripeRef, StripeRequest, check_digest, check_url,
};
use bytes::Bytes;
use sha2::{Digest, Sha256};
use std::collections::VecDeque;
use std::io;
use std::sync::Arc;
use tokio::sync::mpsc;

/// Why an object read could not start.
#[derive(Debug, thiserror::Error)]
pub enum ObjectError {
    /// Bad URL, digest or range syntax.
    #[error(transparent)]
    Bad(#[from] ProtoError),
    /// The range does not fit the object.
    #[error("range not satisfiable for an object of {size} bytes")]
    Range {
        /// The object's size.
        size: u64,
    },
    /// The origin refused or failed the HEAD.
    #[error(transparent)]
    Origin(#[from] OriginError),
}

/// An object read in progress.
pub struct ObjectRead {
    /// What is being read.
    pub spec: ObjectSpec,
    /// First byte sent.
    pub start: u64,
    /// One past the last byte sent.
    pub end: u64,
    /// The bytes, in order; an error ends the stream early.
    pub body: mpsc::Receiver<io::Result<Bytes>>,
}

/// A requested byte range: `start-end` (inclusive end), `start-`, or
/// `-suffix`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ByteRange {
    /// From `start` to `end` inclusive (or to the end).
    From(u64, Option<u64>),
    /// The last `n` bytes.
    Suffix(u64),
}

impl ByteRange {
    /// Parses a single `bytes=` range; `None` for a malformed header.
    pub fn parse(h: &str) -> Option<ByteRange> {
        let spec = h.trim().strip_prefix("bytes=")?;
        if spec.contains(',') {
            return None;
        }
        let (a, b) = spec.split_once('-')?;
        if a.is_empty() {
            return b.parse().ok().map(ByteRange::Suffix);
        }
        let a = a.parse().ok()?;
        let b = if b.is_empty() {
            None
        } else {
            Some(b.parse().ok()?)
        };
        Some(ByteRange::From(a, b))
    }

    /// `[start, end)` within an object of `size` bytes, if satisfiable.
    pub fn resolve(self, size: u64) -> Option<(u64, u64)> {
        match self {
            ByteRange::From(a, b) => {
                let end = b.map_or(size, |b| b.saturating_add(1).min(size));
                (a < size && a < end).then_some((a, end))
            }
            ByteRange::Suffix(n) => (n > 0 && size > 0).then(|| (size - n.min(size), size)),
        }
    }
}

/// Starts reading `url` (optionally checked against `digest`) for this
/// node's client, its size and validator from an origin HEAD.
pub async fn open_object(
    node: &Arc<Node>,
    url: &str,
    digest: Option<String>,
    range: Option<ByteRange>,
) -> Result<ObjectRead, ObjectError> {
    check_url(url)?;
    if let Some(d) = &digest {
        check_digest(d)?;
    }
    // A mirrored registry's content read through the API: only what the
    // registry serves to anyone, unless local clients are trusted (the
    // mirror port checks a client's credentials; this port takes none).
    let meta = if node.origin.registries().owns(url) && !node.cfg.mirror.trust_local_clients {
        let anyone = crate::origin::registries::Identity::Anonymous;
        match node.origin.head_as(url, anyone).await {
            Err(OriginError::Status(401 | 403)) => {
                let why = "a private registry's content: read it through the mirror port, with credentials the registry accepts";
                return Err(ObjectError::Origin(OriginError::Refused(
                    crate::origin::allow::Refused(why.into()),
                )));
            }
            other => other?,
        }
    } else {
        node.origin.head(url).await?
    };
    let spec = ObjectSpec {
        url: url.to_owned(),
        size: meta.size,
        validator: meta.validator,
        digest,
    };
    open_spec(node, spec, range)
}

/// Starts reading an object already described (size known, for example
/// from a manifest), with no request to the origin first.
pub fn open_spec(
    node: &Arc<Node>,
    spec: ObjectSpec,
    range: Option<ByteRange>,
) -> Result<ObjectRead, ObjectError> {
    open_inner(node, spec, range, OnMismatch::PurgeAndReread)
}

/// [`open_spec`] for a size that is only a guess (a manifest sized from
/// the mesh while the registry is down): a digest mismatch then most
/// likely means a wrong size, so it fails the read and touches no copy.
pub fn open_spec_guessed(node: &Arc<Node>, spec: ObjectSpec) -> Result<ObjectRead, ObjectError> {
    open_inner(node, spec, None, OnMismatch::Fail)
}

/// What a read does when the whole object does not match its digest.
#[derive(Clone, Copy, PartialEq, Eq)]
enum OnMismatch {
    /// Drop the stripes everywhere and read the object again.
    PurgeAndReread,
    /// Drop the stripes everywhere (the second read itself).
    Purge,
    /// Only fail the read.
    Fail,
}

fn open_inner(
    node: &Arc<Node>,
    spec: ObjectSpec,
    range: Option<ByteRange>,
    on_mismatch: OnMismatch,
) -> Result<ObjectRead, ObjectError> {
    let (start, end) = match range {
        None => (0, spec.size),
        Some(r) => r
            .resolve(spec.size)
            .ok_or(ObjectError::Range { size: spec.size })?,
    };
    let (tx, body) = mpsc::channel(4);
    node.spawn(stream_object(
        node.clone(),
        spec.clone(),
        (start, end),
        tx,
        on_mismatch,
    ));
    Ok(ObjectRead {
        spec,
        start,
        end,
        body,
    })
}

fn request(node: &Node, spec: &ObjectSpec, index: u64, from: u64) -> StripeRequest {
    let stripe = StripeRef {
        object: spec.clone(),
        stripe_size: node.cfg.stripe_size,
        index,
    };
    let m = node.membership.load();
    let path = node.path_to(&m, stripe.key());
    let mut req = StripeRequest::new(
        stripe,
        path.hops(),
        path.fallbacks(),
        node.cfg.timeouts.deadline_ms,
    );
    req.from = from;
    req
}

/// How many times a local read reopens a stripe whose stream broke before
/// giving up on the object. Each reopen starts from the byte where the
/// last one stopped, with a fresh path; a flight this node started for its
/// own client ends at the origin, so one reopen normally suffices (the
/// first stream may have joined a flight serving a peer, which gives up
/// when that peer's candidates are exhausted instead of asking the origin).
const REOPENS: u32 = 3;

/// Per-object state of a local read: where the bytes go, the running
/// whole-object hash and the chunk held back until it is verified.
struct Sink {
    tx: mpsc::Sender<io::Result<Bytes>>,
    sha: Option<Sha256>,
    held: Option<Bytes>,
}

impl Sink {
    /// Sends `d` on (holding back the latest chunk while hashing). False
    /// when the reader went away.
    async fn send(&mut self, d: Bytes) -> bool {
        if let Some(h) = self.sha.as_mut() {
            h.update(&d);
        }
        let out = if self.sha.is_some() {
            self.held.replace(d)
        } else {
            Some(d)
        };
        match out {
            Some(out) if !out.is_empty() => self.tx.send(Ok(out)).await.is_ok(),
            _ => true,
        }
    }

    async fn fail(&self, message: String) {
        let _ = self.tx.send(Err(io::Error::other(message))).await;
    }
}

/// Copies one stripe's frames into `sink` from `*pos` up to `stripe_end`.
/// `Ok(false)` means the reader went away.
async fn copy_stripe(
    rx: &mut mpsc::Receiver<Frame>,
    sink: &mut Sink,
    pos: &mut u64,
    stripe_end: u64,
) -> Result<bool, Failure> {
    loop {
        match rx.recv().await {
            Some(Frame::Data(mut d, _)) => {
                d.truncate((stripe_end - *pos).min(d.len() as u64) as usize);
                *pos += d.len() as u64;
                if !sink.send(d).await {
                    return Ok(false);
                }
            }
            Some(Frame::KeepAlive) => {}
            Some(Frame::End { .. }) if *pos >= stripe_end => return Ok(true),
            Some(Frame::End { .. }) => return Err(Failure::retryable("ended early")),
            Some(Frame::Error(f)) => return Err(f),
            None => return Err(Failure::retryable("stream closed")),
        }
    }
}

async fn stream_object(
    node: Arc<Node>,
    spec: ObjectSpec,
    (start, end): (u64, u64),
    tx: mpsc::Sender<io::Result<Bytes>>,
    on_mismatch: OnMismatch,
) {
    let ss = node.cfg.stripe_size;
    let window_stripes = (node.cfg.readahead / ss).max(1) as usize;
    let whole = start == 0 && end == spec.size;
    let mut sink = Sink {
        tx,
        sha: (whole && spec.digest.is_some()).then(Sha256::new),
        held: None,
    };
    if start < end {
        let (first, last) = (start / ss, (end - 1) / ss);
        let mut window = VecDeque::new();
        let mut next = first;
        for i in first..=last {
            while next <= last && window.len() < window_stripes {
                let from = if next == first { start - first * ss } else { 0 };
                let req = request(&node, &spec, next, from);
                window.push_back(node.serve(req, true).await);
                next += 1;
            }
            let Some(opened) = window.pop_front() else {
                return;
            };
            tracing::debug!(stripe = i, "object: streaming stripe");
            let stripe_end = ((i + 1) * ss).min(end);
            let mut pos = if i == first { start } else { i * ss };
            let mut opened = opened.map_err(|e| Failure::retryable(e.to_string()));
            let mut reopens = 0;
            loop {
                let result = match opened {
                    Ok(mut rx) => copy_stripe(&mut rx, &mut sink, &mut pos, stripe_end).await,
                    Err(e) => Err(e),
                };
                match result {
                    Ok(true) => break,
                    Ok(false) => return,
                    Err(b) if b.fatal || reopens == REOPENS => {
                        sink.fail(format!("stripe {i}: {}", b.message)).await;
                        return;
                    }
                    Err(b) => {
                        reopens += 1;
                        tracing::info!(
                            stripe = i,
                            at = pos,
                            "stripe broke ({}); reopening",
                            b.message
                        );
                        let req = request(&node, &spec, i, pos - i * ss);
                        opened = node
                            .serve(req, true)
                            .await
                            .map_err(|e| Failure::retryable(e.to_string()));
                    }
                }
            }
        }
    }
    if let (Some(h), Some(want)) = (sink.sha.take(), &spec.digest) {
        let got = format!("sha256:{}", hex::encode(h.finalize()));
        if &got != want {
            sink.fail(format!("digest mismatch: want {want}, got {got}"))
                .await;
            if on_mismatch != OnMismatch::Fail {
                mismatch::recover(&node, &spec, on_mismatch == OnMismatch::PurgeAndReread).await;
            }
            return;
        }
    }
    if let Some(h) = sink.held.take() {
        let _ = sink.tx.send(Ok(h)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_parse_and_resolve() {
        let r = |s| ByteRange::parse(s);
        assert_eq!(r("bytes=0-9").and_then(|r| r.resolve(100)), Some((0, 10)));
        assert_eq!(r("bytes=90-").and_then(|r| r.resolve(100)), Some((90, 100)));
        assert_eq!(r("bytes=-10").and_then(|r| r.resolve(100)), Some((90, 100)));
        assert_eq!(
            r("bytes=50-500").and_then(|r| r.resolve(100)),
            Some((50, 100))
        );
        assert_eq!(r("bytes=100-").and_then(|r| r.resolve(100)), None);
        assert_eq!(r("bytes=9-3").and_then(|r| r.resolve(100)), None);
        assert_eq!(r("bytes=0-1,5-6"), None);
        assert_eq!(r("items=0-1"), None);
        assert_eq!(r("bytes=x-1"), None);
        assert_eq!(
            r("bytes=18446744073709551615-").and_then(|r| r.resolve(100)),
            None
        );
    }
}
