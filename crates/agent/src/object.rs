//! Whole objects for this node's own clients: cut into stripes, fetched
//! through the mesh with read-ahead, streamed in order, and checked against
//! an expected digest before the last bytes are released.

use crate::node::Node;
use crate::origin::OriginError;
use crate::proto::{
    Frame, ObjectSpec, ProtoError, StripeRef, StripeRequest, check_digest, check_url,
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
/// node's client.
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
    let meta = node.origin.head(url).await?;
    let spec = ObjectSpec {
        url: url.to_owned(),
        size: meta.size,
        validator: meta.validator,
        digest,
    };
    let (start, end) = match range {
        None => (0, spec.size),
        Some(r) => r
            .resolve(spec.size)
            .ok_or(ObjectError::Range { size: spec.size })?,
    };
    let (tx, body) = mpsc::channel(4);
    tokio::spawn(stream_object(node.clone(), spec.clone(), start, end, tx));
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
    let path = node.with_rng(|rng| m.view.path(node.id, stripe.key(), rng));
    StripeRequest {
        stripe,
        path: path.hops().to_vec(),
        fallbacks: path.fallbacks().to_vec(),
        from,
        ttl_ms: node.cfg.config.timeouts.deadline_ms,
        cached: false,
        relay: false,
        rank: crate::proto::LOCAL_RANK,
    }
}

async fn stream_object(
    node: Arc<Node>,
    spec: ObjectSpec,
    start: u64,
    end: u64,
    tx: mpsc::Sender<io::Result<Bytes>>,
) {
    let fail = |m: String| io::Error::other(m);
    let ss = node.cfg.stripe_size;
    let whole = start == 0 && end == spec.size;
    let mut sha = (whole && spec.digest.is_some()).then(Sha256::new);
    let mut held: Option<Bytes> = None;
    if start < end {
        let (first, last) = (start / ss, (end - 1) / ss);
        let mut window = VecDeque::new();
        let mut next = first;
        for i in first..=last {
            while next <= last && window.len() < node.cfg.config.readahead {
                let from = if next == first { start - first * ss } else { 0 };
                let req = request(&node, &spec, next, from);
                window.push_back(node.open_stripe(req, true).await);
                next += 1;
            }
            let rx = match window.pop_front() {
                Some(Ok(rx)) => rx,
                Some(Err(e)) => {
                    let _ = tx.send(Err(fail(format!("stripe {i}: {e}")))).await;
                    return;
                }
                None => return,
            };
            tracing::debug!(stripe = i, "object: streaming stripe");
            let stripe_end = ((i + 1) * ss).min(end);
            let mut pos = if i == first { start } else { i * ss };
            let mut rx = rx;
            loop {
                match rx.recv().await {
                    Some(Frame::Data(mut d)) => {
                        d.truncate((stripe_end - pos).min(d.len() as u64) as usize);
                        pos += d.len() as u64;
                        if let Some(h) = sha.as_mut() {
                            h.update(&d);
                        }
                        let out = if sha.is_some() {
                            held.replace(d)
                        } else {
                            Some(d)
                        };
                        if let Some(out) = out
                            && !out.is_empty()
                            && tx.send(Ok(out)).await.is_err()
                        {
                            return;
                        }
                    }
                    Some(Frame::KeepAlive) => {}
                    Some(Frame::End { .. }) if pos >= stripe_end => break,
                    Some(Frame::End { .. }) => {
                        let _ = tx.send(Err(fail(format!("stripe {i} ended early")))).await;
                        return;
                    }
                    Some(Frame::Error { message, .. }) => {
                        let _ = tx.send(Err(fail(format!("stripe {i}: {message}")))).await;
                        return;
                    }
                    None => {
                        let _ = tx
                            .send(Err(fail(format!("stripe {i}: stream closed"))))
                            .await;
                        return;
                    }
                }
            }
        }
    }
    if let (Some(h), Some(want)) = (sha, &spec.digest) {
        let got = format!("sha256:{}", hex::encode(h.finalize()));
        if &got != want {
            tracing::error!(url = %spec.url, %want, %got, "digest mismatch; evicting the object's stripes");
            evict(&node, &spec).await;
            let _ = tx
                .send(Err(fail(format!(
                    "digest mismatch: want {want}, got {got}"
                ))))
                .await;
            return;
        }
    }
    if let Some(h) = held {
        let _ = tx.send(Ok(h)).await;
    }
}

async fn evict(node: &Arc<Node>, spec: &ObjectSpec) {
    let stripes = spec.size.div_ceil(node.cfg.stripe_size);
    for index in 0..stripes {
        let key = StripeRef {
            object: spec.clone(),
            stripe_size: node.cfg.stripe_size,
            index,
        }
        .entry_key();
        let store = node.store.clone();
        let _ = tokio::task::spawn_blocking(move || store.remove(&key)).await;
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
