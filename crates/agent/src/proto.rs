//! The peer protocol's vocabulary: what a stripe is, how a request for one
//! is encoded, and how its bytes are framed on the wire.
//!
//! Requests travel as query strings ([`Wire`]); a stripe's bytes come back
//! as a sequence of frames, each `[kind u8][len u32 LE][payload]`:
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
//! elsewhere from the bytes it has verified. Each endpoint (its path,
//! request, handler and client call) is a module of `crate::endpoints`.

mod frame;
mod query;

pub use frame::{CHUNK, ChunkSum, Decoder, FIRST_CHUNK, Frame, chunk_sum};
pub use query::{StripeQuery, Wire, check_digest, check_url};

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

    /// The key of the whole object, which orders its piece relays.
    pub fn object_key(&self) -> Key {
        Key::for_object(self.object.identity().as_bytes())
    }

    /// Piece `piece` of this stripe counted across the object, for pieces
    /// of `piece_size` bytes (not 0): each stripe starts a new piece.
    pub fn piece_in_object(&self, piece_size: u64, piece: u64) -> u64 {
        self.index * self.stripe_size.div_ceil(piece_size.max(1)) + piece
    }

    /// Every stripe of this stripe's object, in order: its placement key
    /// and length.
    pub fn object_stripes(&self) -> Vec<(Key, u64)> {
        let identity = self.object.identity();
        let size = self.object.size;
        let step = self.stripe_size.max(1);
        (0..size.div_ceil(step))
            .map(|i| {
                let len = (size - i * step).min(step);
                (Key::for_stripe(identity.as_bytes(), i), len)
            })
            .collect()
    }

    /// How many pieces of `piece_size` bytes the object has, counted as
    /// [`StripeRef::piece_in_object`] counts them.
    pub fn pieces_in_object(&self, piece_size: u64) -> u64 {
        let stripes = self.object.size.div_ceil(self.stripe_size.max(1));
        stripes * self.stripe_size.div_ceil(piece_size.max(1))
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

/// A request to serve a stripe: the stripe endpoint's request, and the
/// data plane's unit of work on every node along its path.
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
    /// The byte after the last one wanted, within the stripe; `None` for
    /// the stripe's end. A range that stops short of the end (one piece,
    /// see `crate::rack`) ends with an END frame whose length is `to` and
    /// whose checksum is all zeros: only a stream that reaches the end of
    /// the stripe carries its checksum.
    pub to: Option<u64>,
    /// Milliseconds the requester still waits; every retry must fit.
    pub ttl_ms: u64,
    /// Answer only from the store: never fetch or forward (a peek at a
    /// previous owner).
    pub cached: bool,
    /// Only try the first hop, never a fallback or the origin: the request
    /// is a relay around a link the requester cannot use itself.
    pub relay: bool,
    /// A request from a rack peer for one piece (`from..to`) that it ranks
    /// this node first to relay: the receiver fetches that piece along its
    /// own path, never from another rack member, and refuses (503) if it
    /// is already waiting on a rack member for it. See `crate::rack`.
    pub rack: bool,
    /// The rank of the flight that sent this request ([`LOCAL_RANK`] for a
    /// node's own client). A node joins its own flight for the stripe only
    /// if that flight's rank is lower, and a flight it starts gets a lower
    /// rank than the requester's. Ranks fall strictly along every chain of
    /// flights waiting on flights, so two nodes can never wait on each
    /// other, even when their paths cross in opposite directions.
    pub rank: u8,
    /// Set on a replica pull (`endpoints::replicate`), and never sent: the
    /// first hop is asked only for a copy it holds (`cached`), never to
    /// fetch one, so a source that lost its copy costs the origin nothing.
    pub copy_only: bool,
}

impl StripeRequest {
    /// A node's own request for `stripe` along `path` (hops nearest first)
    /// with the owner's `fallbacks`, from its first byte, at
    /// [`LOCAL_RANK`]; change the fields that differ.
    pub fn new(stripe: StripeRef, path: &[NodeId], fallbacks: &[NodeId], ttl_ms: u64) -> Self {
        StripeRequest {
            stripe,
            path: path.to_vec(),
            fallbacks: fallbacks.to_vec(),
            from: 0,
            to: None,
            ttl_ms,
            cached: false,
            relay: false,
            rack: false,
            rank: LOCAL_RANK,
            copy_only: false,
        }
    }
}

impl StripeRequest {
    /// The byte after the last one wanted, within the stripe.
    pub fn end(&self) -> u64 {
        self.to.unwrap_or_else(|| self.stripe.len())
    }
}

/// The rank of requests from a node's own client: above every flight.
pub const LOCAL_RANK: u8 = u8::MAX;

/// Smallest and largest stripe sizes a peer accepts.
pub const STRIPE_SIZES: (u64, u64) = (64 * 1024, 4 << 30);
/// Largest object accepted (1 PiB).
pub const MAX_OBJECT: u64 = 1 << 50;
/// Longest deadline a request may carry (one hour).
pub const MAX_TTL_MS: u64 = crate::timing::MAX_DEADLINE_MS;
