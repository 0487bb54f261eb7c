//! The peer protocol's vocabulary: what a stripe is, how a request for one
//! is encoded, and how its bytes are framed on the wire.
//!
//! A stripe request is `GET /peer/v1/stripe?<query>`; the response body is
//! a sequence of frames, each `[kind u8][len u32 LE][payload]`:
//!
//! - `DATA`: a 16-byte BLAKE3 prefix of the chunk, then the chunk. The
//!   receiver checks it before using a single byte, so a corrupted chunk is
//!   never written, relayed or admitted.
//! - `KEEPALIVE`: empty; sent while a hop waits on its own upstream, so a
//!   silent peer can be told from a slow one.
//! - `END`: the stripe length (u64 LE) and the stripe's BLAKE3, computed
//!   where the stripe entered the cluster. Only after it may a receiver
//!   admit the stripe.
//! - `ERROR`: a fatal flag byte and a message; the sender gave up.
//!
//! A body that stops before `END` is a broken stream: the receiver resumes
//! elsewhere from the bytes it has verified.

mod frame;

pub use frame::{CHUNK, ChunkSum, Decoder, FIRST_CHUNK, Frame, chunk_sum};

use serde::Deserialize;
use shoal_placement::{Key, NodeId};
use shoal_store::EntryKey;

/// The content an object is identified by, and where its origin is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectSpec {
    /// The origin URL (http or https).
    pub url: String,
    /// Total size in bytes.
    pub size: u64,
    /// The origin's validator (ETag or Last-Modified), if any.
    pub validator: Option<String>,
    /// The expected digest of the whole object (`sha256:<64 hex>`), if the
    /// caller gave one. When present it alone is the object's identity.
    pub digest: Option<String>,
}

impl ObjectSpec {
    /// The content identity: the digest when given, else URL, validator and
    /// size together (so a changed object is a different object).
    pub fn identity(&self) -> String {
        match &self.digest {
            Some(d) => d.clone(),
            None => format!(
                "{}\n{}\n{}",
                self.url,
                self.validator.as_deref().unwrap_or(""),
                self.size
            ),
        }
    }
}

/// One stripe of an object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StripeRef {
    /// The object it is cut from; its identity is part of the stripe key.
    pub object: ObjectSpec,
    /// The cluster's stripe size (the same on every node).
    pub stripe_size: u64,
    /// Its position in the object, from 0: it covers bytes
    /// `[index * stripe_size, (index + 1) * stripe_size)`, cut at the end.
    pub index: u64,
}

impl StripeRef {
    /// Byte range `[start, end)` of the object this stripe covers.
    pub fn range(&self) -> (u64, u64) {
        let start = self.index * self.stripe_size;
        (start, (start + self.stripe_size).min(self.object.size))
    }

    /// Length in bytes.
    pub fn len(&self) -> u64 {
        let (s, e) = self.range();
        e - s
    }

    /// Whether the stripe is empty (only for an empty object).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The placement key `K = H(identity, i)`.
    pub fn key(&self) -> Key {
        Key::for_stripe(self.object.identity().as_bytes(), self.index)
    }

    /// The store key: BLAKE3 of identity, stripe size and index.
    pub fn entry_key(&self) -> EntryKey {
        let mut h = blake3::Hasher::new();
        h.update(self.object.identity().as_bytes());
        h.update(&self.stripe_size.to_le_bytes());
        h.update(&self.index.to_le_bytes());
        EntryKey(*h.finalize().as_bytes())
    }
}

/// Why a stripe could not be delivered: the one shape every layer passes
/// on (an error frame on the wire, a flight that gave up, a peer's answer,
/// a fill or a local read that broke).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    /// Whether nobody else would do better (the origin said no), so there
    /// is no point trying elsewhere.
    pub fatal: bool,
    /// What went wrong, for logs and for the node that asked.
    pub message: String,
}

impl Failure {
    /// A failure another source may not have.
    pub fn retryable(message: impl Into<String>) -> Failure {
        Failure {
            fatal: false,
            message: message.into(),
        }
    }

    /// A failure every source would have.
    pub fn fatal(message: impl Into<String>) -> Failure {
        Failure {
            fatal: true,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// Why a request or a frame was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProtoError {
    /// A query parameter is missing or malformed.
    #[error("bad request: {0}")]
    BadRequest(String),
    /// The byte stream does not follow the framing.
    #[error("bad frame: {0}")]
    BadFrame(String),
    /// A chunk's bytes do not match its checksum.
    #[error("chunk checksum mismatch")]
    CorruptChunk,
}

/// The query of a stripe request, as it arrives.
#[derive(Debug, Default, Deserialize)]
pub struct StripeQuery {
    /// The object's origin URL (`ObjectSpec::url`).
    pub url: String,
    /// The object's size in bytes.
    pub size: u64,
    /// The origin's ETag or Last-Modified for it, part of its identity
    /// when there is no digest.
    pub v: Option<String>,
    /// Expected whole-object digest.
    pub d: Option<String>,
    /// The cluster's stripe size, checked against the receiver's own.
    pub ss: u64,
    /// Which stripe of the object.
    pub i: u64,
    /// Remaining hops, comma-separated node ids.
    #[serde(default)]
    pub path: String,
    /// Fallbacks, comma-separated node ids.
    #[serde(default)]
    pub fb: String,
    /// First byte wanted, within the stripe.
    #[serde(default)]
    pub from: u64,
    /// Milliseconds left before the caller gives up.
    pub ttl: Option<u64>,
    /// Only answer from the store; never fetch.
    #[serde(default)]
    pub cached: bool,
    /// Relay mode: try only the first hop, never a fallback or the origin.
    #[serde(default)]
    pub relay: bool,
    /// The rank of the requester's flight (see [`StripeRequest::rank`]).
    pub rank: Option<u8>,
}

/// A validated stripe request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StripeRequest {
    /// The stripe asked for.
    pub stripe: StripeRef,
    /// The hops still to go after the receiver, nearest first; empty when
    /// the receiver is the owner (or stands in for it).
    pub path: Vec<NodeId>,
    /// The owner's successors, which stand in for it when it is down.
    pub fallbacks: Vec<NodeId>,
    /// The first byte wanted, within the stripe (a resumed transfer asks
    /// for what it does not have yet).
    pub from: u64,
    /// Milliseconds the requester still waits; every retry must fit.
    pub ttl_ms: u64,
    /// Answer only from the store: never fetch or forward (a peek at a
    /// previous owner, a stat, a purge).
    pub cached: bool,
    /// Only try the first hop, never a fallback or the origin: the request
    /// is a relay around a link the requester cannot use itself.
    pub relay: bool,
    /// The rank of the flight that sent this request ([`LOCAL_RANK`] for a
    /// node's own client). A node joins its own flight for the stripe only
    /// if that flight's rank is lower, and a flight it starts gets a lower
    /// rank than the requester's. Ranks fall strictly along every chain of
    /// flights waiting on flights, so two nodes can never wait on each
    /// other, even when their paths cross in opposite directions.
    pub rank: u8,
}

impl StripeRequest {
    /// A request about `stripe` alone, answered from the receiver's store
    /// (no path, no fetching): for stat, purge and the like.
    pub fn about(stripe: StripeRef, ttl_ms: u64) -> StripeRequest {
        StripeRequest {
            stripe,
            path: Vec::new(),
            fallbacks: Vec::new(),
            from: 0,
            ttl_ms,
            cached: true,
            relay: false,
            rank: LOCAL_RANK,
        }
    }
}

/// The rank of requests from a node's own client: above every flight.
pub const LOCAL_RANK: u8 = u8::MAX;

/// The peer-protocol path that answers how long a node's stored copy of
/// a stripe is, without sending it (the mirror learns a manifest's size
/// this way while the registry is down).
pub const STAT_PATH: &str = "/peer/v1/stat";
/// The header carrying that length.
pub const STRIPE_LEN_HEADER: &str = "x-shoal-stripe-len";

/// Smallest and largest stripe sizes a peer accepts.
pub const STRIPE_SIZES: (u64, u64) = (64 * 1024, 4 << 30);
/// Largest object accepted (1 PiB).
pub const MAX_OBJECT: u64 = 1 << 50;
/// Longest deadline a request may carry (one hour).
pub const MAX_TTL_MS: u64 = crate::timing::MAX_DEADLINE_MS;

fn bad(msg: impl Into<String>) -> ProtoError {
    ProtoError::BadRequest(msg.into())
}

/// Checks an origin URL: http or https, no credentials, sane length.
pub fn check_url(url: &str) -> Result<(), ProtoError> {
    if url.len() > 4096 {
        return Err(bad("url longer than 4096 bytes"));
    }
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .ok_or_else(|| bad("url must start with http:// or https://"))?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    if authority.is_empty() || authority.contains('@') {
        return Err(bad("url needs a host and must not carry credentials"));
    }
    if url.chars().any(|c| c.is_control() || c == ' ') {
        return Err(bad("url contains spaces or control characters"));
    }
    Ok(())
}

/// Checks a digest: `sha256:` and 64 lowercase hex digits.
pub fn check_digest(d: &str) -> Result<(), ProtoError> {
    let hex = d
        .strip_prefix("sha256:")
        .ok_or_else(|| bad("digest must be sha256:<64 hex digits>"))?;
    if hex.len() != 64
        || !hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Err(bad("digest must be sha256:<64 lowercase hex digits>"));
    }
    Ok(())
}

fn parse_ids(s: &str, max: usize, what: &str) -> Result<Vec<NodeId>, ProtoError> {
    if s.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<NodeId> = s
        .split(',')
        .map(|h| {
            (h.len() == 16)
                .then(|| u64::from_str_radix(h, 16).ok())
                .flatten()
                .map(NodeId)
                .ok_or_else(|| bad(format!("{what}: {h:?} is not a 16-digit hex node id")))
        })
        .collect::<Result<_, _>>()?;
    if ids.len() > max {
        return Err(bad(format!("{what}: at most {max} node ids")));
    }
    Ok(ids)
}

/// Joins node ids for a query.
pub fn join_ids(ids: &[NodeId]) -> String {
    ids.iter()
        .map(|id| format!("{:016x}", id.0))
        .collect::<Vec<_>>()
        .join(",")
}

impl StripeQuery {
    /// Validates every field.
    pub fn validate(self) -> Result<StripeRequest, ProtoError> {
        check_url(&self.url)?;
        if let Some(d) = &self.d {
            check_digest(d)?;
        }
        if let Some(v) = &self.v
            && (v.len() > 512 || v.chars().any(|c| c.is_control()))
        {
            return Err(bad("validator too long or has control characters"));
        }
        if self.size > MAX_OBJECT {
            return Err(bad("object size above 1 PiB"));
        }
        if !(STRIPE_SIZES.0..=STRIPE_SIZES.1).contains(&self.ss) {
            return Err(bad("stripe size must be between 64 KiB and 4 GiB"));
        }
        let stripes = self.size.div_ceil(self.ss).max(1);
        if self.i >= stripes {
            return Err(bad(format!(
                "stripe {} of an object with {stripes}",
                self.i
            )));
        }
        let stripe = StripeRef {
            object: ObjectSpec {
                url: self.url,
                size: self.size,
                validator: self.v,
                digest: self.d,
            },
            stripe_size: self.ss,
            index: self.i,
        };
        if self.from > stripe.len() {
            return Err(bad("from is past the end of the stripe"));
        }
        Ok(StripeRequest {
            path: parse_ids(&self.path, 3, "path")?,
            fallbacks: parse_ids(&self.fb, 64, "fb")?,
            from: self.from,
            ttl_ms: self
                .ttl
                .unwrap_or(crate::timing::DEFAULT_DEADLINE_MS)
                .min(MAX_TTL_MS),
            cached: self.cached,
            relay: self.relay,
            rank: self.rank.unwrap_or(0),
            stripe,
        })
    }
}

impl StripeRequest {
    /// The query string that asks a peer for this request.
    pub fn to_query(&self) -> String {
        let o = &self.stripe.object;
        let mut q = vec![
            ("url", o.url.clone()),
            ("size", o.size.to_string()),
            ("ss", self.stripe.stripe_size.to_string()),
            ("i", self.stripe.index.to_string()),
            ("path", join_ids(&self.path)),
            ("fb", join_ids(&self.fallbacks)),
            ("from", self.from.to_string()),
            ("ttl", self.ttl_ms.to_string()),
            ("rank", self.rank.to_string()),
        ];
        if let Some(v) = &o.validator {
            q.push(("v", v.clone()));
        }
        if let Some(d) = &o.digest {
            q.push(("d", d.clone()));
        }
        if self.cached {
            q.push(("cached", "true".into()));
        }
        if self.relay {
            q.push(("relay", "true".into()));
        }
        q.iter()
            .map(|(k, v)| format!("{k}={}", encode(v)))
            .collect::<Vec<_>>()
            .join("&")
    }
}

/// Percent-encodes everything but unreserved characters.
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~,".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(s: &str) -> Result<StripeRequest, ProtoError> {
        let q: StripeQuery = serde_urlencoded_lite(s);
        q.validate()
    }

    /// Builds a query from `k=v&...` without another dependency.
    fn serde_urlencoded_lite(s: &str) -> StripeQuery {
        let mut q = StripeQuery::default();
        for kv in s.split('&') {
            let (k, v) = kv.split_once('=').unwrap();
            match k {
                "url" => q.url = v.into(),
                "size" => q.size = v.parse().unwrap(),
                "ss" => q.ss = v.parse().unwrap(),
                "i" => q.i = v.parse().unwrap(),
                "d" => q.d = Some(v.into()),
                "path" => q.path = v.into(),
                "from" => q.from = v.parse().unwrap(),
                _ => panic!("{k}"),
            }
        }
        q
    }

    #[test]
    fn requests_are_validated() {
        let ok = "url=http://o/x&size=1000000&ss=262144&i=3";
        let r = query(ok).unwrap();
        assert_eq!(r.stripe.range(), (786_432, 1_000_000));
        assert!(query("url=file:///etc/passwd&size=10&ss=262144&i=0").is_err());
        assert!(query("url=http://u:p@o/x&size=10&ss=262144&i=0").is_err());
        assert!(query("url=http://o/x&size=10&ss=1&i=0").is_err());
        assert!(query("url=http://o/x&size=1000000&ss=262144&i=4").is_err());
        assert!(query("url=http://o/x&size=10&ss=262144&i=0&from=11").is_err());
        assert!(query("url=http://o/x&size=10&ss=262144&i=0&d=sha256:../../x").is_err());
        assert!(query("url=http://o/x&size=10&ss=262144&i=0&path=zz").is_err());
        assert!(query("url=http://o/x&size=10&ss=262144&i=0&path=0000000000000001").is_ok());
    }

    mod round_trip {
        use super::super::*;
        use proptest::prelude::*;

        fn ids(max: usize) -> impl Strategy<Value = Vec<NodeId>> {
            proptest::collection::vec(any::<u64>().prop_map(NodeId), 0..=max)
        }

        prop_compose! {
            fn request()(
                host in "[a-z0-9.-]{1,20}(:[0-9]{1,5})?",
                path in "(/[A-Za-z0-9._~%!$&'()*+,;=:@-]{0,12}){0,4}(\\?[A-Za-z0-9=&%+-]{0,20})?",
                https in any::<bool>(),
                ss in STRIPE_SIZES.0..=STRIPE_SIZES.1,
                stripes in 1u64..1000,
                tail in 0u64..=1,
                validator in proptest::option::of("[ -~\u{a0}-\u{ff}]{0,40}"),
                digest in proptest::option::of("[0-9a-f]{64}"),
                path_ids in ids(3),
                fallbacks in ids(64),
                from_share in 0u64..=1000,
                ttl in 0..=MAX_TTL_MS,
                cached in any::<bool>(),
                relay in any::<bool>(),
                rank in any::<u8>(),
                pick in any::<prop::sample::Index>(),
            ) -> StripeRequest {
                let size = (stripes * ss - tail).min(MAX_OBJECT);
                let count = size.div_ceil(ss).max(1);
                let stripe = StripeRef {
                    object: ObjectSpec {
                        url: format!("{}://{host}{path}", if https { "https" } else { "http" }),
                        size,
                        validator,
                        digest: digest.map(|d| format!("sha256:{d}")),
                    },
                    stripe_size: ss,
                    index: pick.index(count as usize) as u64,
                };
                let from = stripe.len() * from_share / 1000;
                StripeRequest { stripe, path: path_ids, fallbacks, from, ttl_ms: ttl, cached, relay, rank }
            }
        }

        proptest! {
            /// Every field of a request comes back the same through the
            /// query string and the decoder the server uses.
            #[test]
            fn every_field_survives_the_query_string(r in request()) {
                let q: StripeQuery = serde_urlencoded::from_str(&r.to_query()).unwrap();
                prop_assert_eq!(q.validate(), Ok(r));
            }
        }
    }

    #[test]
    fn queries_survive_encoding() {
        let r = query("url=http://o/a&size=5000000&ss=1048576&i=2&from=7").unwrap();
        let back = r.to_query();
        assert!(back.contains("url=http%3A%2F%2Fo%2Fa"));
        assert!(back.contains("from=7"));
    }
}
