//! The demo's embedded origin: an HTTP server on loopback that serves
//! generated objects (`/demo/<name>`, each name its own bytes) with
//! `HEAD`, `Range` and an `ETag`, as a blob store does, and counts every
//! byte it sends. The bytes come from a seeded generator, block by block,
//! so nothing is held in memory.

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use sha2::{Digest, Sha256};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::net::TcpListener;

/// Bytes per generated block: the unit the generator works in.
const BLOCK: u64 = 64 << 10;

/// A running origin.
pub struct Origin {
    /// Where it listens.
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

struct Shared {
    size: u64,
    sent: AtomicU64,
}

impl Origin {
    /// Starts an origin whose objects are each `size` bytes.
    pub async fn start(size: u64) -> std::io::Result<Origin> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            size,
            sent: AtomicU64::new(0),
        });
        let app = Router::new()
            .route("/demo/{name}", axum::routing::get(serve).head(serve))
            .with_state(shared.clone());
        let task = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!("demo origin: {e}");
            }
        });
        Ok(Origin { addr, shared, task })
    }

    /// The URL of object `name`.
    pub fn url(&self, name: &str) -> String {
        format!("http://{}/demo/{name}", self.addr)
    }

    /// Body bytes sent so far, over all requests.
    pub fn sent(&self) -> u64 {
        self.shared.sent.load(Ordering::Relaxed)
    }
}

impl Drop for Origin {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The SHA-256 of object `name` of `size` bytes, as `sha256:<hex>`.
pub fn digest(name: &str, size: u64) -> String {
    // Writing into a sink cannot fail.
    write_to(&mut std::io::sink(), name, size).unwrap_or_default()
}

/// Writes object `name` of `size` bytes to `out`; returns its SHA-256 as
/// `sha256:<hex>`.
pub fn write_to(out: &mut impl std::io::Write, name: &str, size: u64) -> std::io::Result<String> {
    let mut h = Sha256::new();
    let mut at = 0;
    while at < size {
        let end = (at + BLOCK).min(size);
        let c = chunk(name, at, end);
        h.update(&c);
        out.write_all(&c)?;
        at = end;
    }
    Ok(format!("sha256:{}", hex::encode(h.finalize())))
}

/// Bytes `[start, end)` of object `name`, within one block.
fn chunk(name: &str, start: u64, end: u64) -> Bytes {
    let block = start / BLOCK;
    let mut seed = u64::from_le_bytes(
        blake3::hash(name.as_bytes()).as_bytes()[..8]
            .try_into()
            .unwrap_or([0; 8]),
    ) ^ block.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let mut out = Vec::with_capacity(BLOCK as usize);
    while (out.len() as u64) < BLOCK {
        // splitmix64: fast, and different for every block and name.
        seed = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = seed;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        out.extend_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    let from = (start - block * BLOCK) as usize;
    let to = (end - block * BLOCK) as usize;
    Bytes::from(out).slice(from..to)
}

/// `bytes=A-B` (or `A-`) within `size`, as `[start, end)`.
fn range(h: &HeaderValue, size: u64) -> Option<(u64, u64)> {
    let spec = h.to_str().ok()?.strip_prefix("bytes=")?;
    let (a, b) = spec.split_once('-')?;
    let start: u64 = a.trim().parse().ok()?;
    let end = match b.trim() {
        "" => size,
        b => b.parse::<u64>().ok()?.checked_add(1)?.min(size),
    };
    (start < end).then_some((start, end))
}

async fn serve(
    State(s): State<Arc<Shared>>,
    method: Method,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Response {
    let size = s.size;
    let etag = format!("\"{}\"", &blake3::hash(name.as_bytes()).to_hex()[..16]);
    let (status, start, end) = match headers.get(header::RANGE) {
        None => (StatusCode::OK, 0, size),
        Some(h) => match range(h, size) {
            Some((a, b)) => (StatusCode::PARTIAL_CONTENT, a, b),
            None => {
                return (
                    StatusCode::RANGE_NOT_SATISFIABLE,
                    [(header::CONTENT_RANGE, format!("bytes */{size}"))],
                )
                    .into_response();
            }
        },
    };
    let mut resp = if method == Method::HEAD {
        Response::new(Body::empty())
    } else {
        let shared = s.clone();
        let blocks = futures_util::stream::unfold(start, move |at| {
            let (shared, name) = (shared.clone(), name.clone());
            async move {
                if at >= end {
                    return None;
                }
                let to = ((at / BLOCK + 1) * BLOCK).min(end);
                let bytes = chunk(&name, at, to);
                shared.sent.fetch_add(bytes.len() as u64, Ordering::Relaxed);
                Some((Ok::<_, std::convert::Infallible>(bytes), to))
            }
        });
        Response::new(Body::from_stream(blocks))
    };
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(end - start));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    if status == StatusCode::PARTIAL_CONTENT
        && let Ok(v) = HeaderValue::from_str(&format!("bytes {start}-{}/{size}", end - 1))
    {
        h.insert(header::CONTENT_RANGE, v);
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_agree_whatever_the_split_and_names_differ() {
        let whole: Vec<u8> = chunk("a", 0, BLOCK).to_vec();
        let mut parts = chunk("a", 0, 1000).to_vec();
        parts.extend_from_slice(&chunk("a", 1000, BLOCK));
        assert_eq!(whole, parts);
        assert_ne!(whole, chunk("b", 0, BLOCK).to_vec());
        assert_ne!(whole, chunk("a", BLOCK, 2 * BLOCK).to_vec());
    }

    #[test]
    fn ranges_parse_within_the_size() {
        let h = |s: &'static str| HeaderValue::from_static(s);
        assert_eq!(range(&h("bytes=0-9"), 100), Some((0, 10)));
        assert_eq!(range(&h("bytes=90-"), 100), Some((90, 100)));
        assert_eq!(range(&h("bytes=90-500"), 100), Some((90, 100)));
        assert_eq!(range(&h("bytes=100-"), 100), None);
        assert_eq!(range(&h("bytes=-5"), 100), None);
        assert_eq!(range(&h("items=0-1"), 100), None);
    }
}
