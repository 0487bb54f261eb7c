//! Requests as query strings: every peer request names a stripe, so every
//! endpoint's request travels as (a part of) one query form,
//! [`StripeQuery`], and is validated field by field before a handler sees
//! it. Fields a request does not use are left out when sending and
//! ignored when receiving, so nodes of two versions still understand each
//! other during a rolling update.

use super::{
    MAX_OBJECT, MAX_TTL_MS, ObjectSpec, ProtoError, STRIPE_SIZES, StripeRef, StripeRequest,
};
use serde::Deserialize;
use shoal_placement::NodeId;

/// A request type of a peer endpoint: how it is written into a query
/// string and read back, checked, from one.
pub trait Wire: Sized {
    /// The query string (without `?`) that carries this request.
    fn to_query(&self) -> String;
    /// The request a received query carries, with every field checked.
    fn from_query(q: StripeQuery) -> Result<Self, ProtoError>;
}

/// The query of a peer request, as it arrives.
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
    /// The byte after the last one wanted; absent for the stripe's end.
    pub to: Option<u64>,
    /// Milliseconds left before the caller gives up.
    pub ttl: Option<u64>,
    /// Only answer from the store; never fetch.
    #[serde(default)]
    pub cached: bool,
    /// Relay mode: try only the first hop, never a fallback or the origin.
    #[serde(default)]
    pub relay: bool,
    /// A rack peer's request for a piece (see [`StripeRequest::rack`]).
    #[serde(default)]
    pub rack: bool,
    /// The rank of the requester's flight (see [`StripeRequest::rank`]).
    pub rank: Option<u8>,
}

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

fn join_ids(ids: &[NodeId]) -> String {
    ids.iter()
        .map(|id| format!("{:016x}", id.0))
        .collect::<Vec<_>>()
        .join(",")
}

/// `k=v&...`, each value percent-encoded.
fn join(pairs: &[(&str, String)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={}", encode(v)))
        .collect::<Vec<_>>()
        .join("&")
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

impl StripeRef {
    fn pairs(&self) -> Vec<(&'static str, String)> {
        let o = &self.object;
        let mut q = vec![
            ("url", o.url.clone()),
            ("size", o.size.to_string()),
            ("ss", self.stripe_size.to_string()),
            ("i", self.index.to_string()),
        ];
        if let Some(v) = &o.validator {
            q.push(("v", v.clone()));
        }
        if let Some(d) = &o.digest {
            q.push(("d", d.clone()));
        }
        q
    }
}

/// A stripe alone: the request of the endpoints that ask about one
/// stored copy (stat, suspect, purge).
impl Wire for StripeRef {
    fn to_query(&self) -> String {
        join(&self.pairs())
    }

    fn from_query(q: StripeQuery) -> Result<Self, ProtoError> {
        check_url(&q.url)?;
        if let Some(d) = &q.d {
            check_digest(d)?;
        }
        if let Some(v) = &q.v
            && (v.len() > 512 || v.chars().any(|c| c.is_control()))
        {
            return Err(bad("validator too long or has control characters"));
        }
        if q.size > MAX_OBJECT {
            return Err(bad("object size above 1 PiB"));
        }
        if !(STRIPE_SIZES.0..=STRIPE_SIZES.1).contains(&q.ss) {
            return Err(bad("stripe size must be between 64 KiB and 4 GiB"));
        }
        let stripes = q.size.div_ceil(q.ss).max(1);
        if q.i >= stripes {
            return Err(bad(format!("stripe {} of an object with {stripes}", q.i)));
        }
        Ok(StripeRef {
            object: ObjectSpec {
                url: q.url,
                size: q.size,
                validator: q.v,
                digest: q.d,
            },
            stripe_size: q.ss,
            index: q.i,
        })
    }
}

impl Wire for StripeRequest {
    fn to_query(&self) -> String {
        let mut q = self.stripe.pairs();
        q.extend([
            ("path", join_ids(&self.path)),
            ("fb", join_ids(&self.fallbacks)),
            ("from", self.from.to_string()),
            ("ttl", self.ttl_ms.to_string()),
            ("rank", self.rank.to_string()),
        ]);
        if self.cached {
            q.push(("cached", "true".into()));
        }
        if self.relay {
            q.push(("relay", "true".into()));
        }
        if let Some(to) = self.to {
            q.push(("to", to.to_string()));
        }
        if self.rack {
            q.push(("rack", "true".into()));
        }
        join(&q)
    }

    fn from_query(mut q: StripeQuery) -> Result<Self, ProtoError> {
        let path = parse_ids(&q.path, 3, "path")?;
        let fallbacks = parse_ids(&q.fb, 64, "fb")?;
        let (from, to, ttl) = (q.from, q.to, q.ttl);
        let (cached, relay, rack, rank) = (q.cached, q.relay, q.rack, q.rank);
        q.path.clear();
        q.fb.clear();
        let stripe = StripeRef::from_query(q)?;
        if from > stripe.len() {
            return Err(bad("from is past the end of the stripe"));
        }
        if to.is_some_and(|to| to <= from || to > stripe.len()) {
            return Err(bad("to must be after from and within the stripe"));
        }
        Ok(StripeRequest {
            stripe,
            path,
            fallbacks,
            from,
            to,
            ttl_ms: ttl
                .unwrap_or(crate::timing::UNNAMED_DEADLINE_MS)
                .min(MAX_TTL_MS),
            cached,
            relay,
            rack,
            rank: rank.unwrap_or(0),
            copy_only: false,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(s: &str) -> Result<StripeRequest, ProtoError> {
        StripeRequest::from_query(serde_urlencoded::from_str(s).unwrap())
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
        assert!(query("url=http://o/x&size=10&ss=262144&i=0&from=4&to=4").is_err());
        assert!(query("url=http://o/x&size=10&ss=262144&i=0&to=11").is_err());
        assert!(query("url=http://o/x&size=10&ss=262144&i=0&from=4&to=5&rack=true").is_ok());
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
                rack in any::<bool>(),
                to_share in proptest::option::of(0u64..=1000),
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
                let to = to_share
                    .map(|t| from + 1 + (stripe.len() - from) * t / 1000)
                    .filter(|&t| t <= stripe.len());
                StripeRequest {
                    stripe, path: path_ids, fallbacks, from, to, ttl_ms: ttl, cached, relay, rack, rank,
                    copy_only: false,
                }
            }
        }

        proptest! {
            /// Every field of a request comes back the same through the
            /// query string and the decoder the server uses.
            #[test]
            fn every_field_survives_the_query_string(r in request()) {
                let q: StripeQuery = serde_urlencoded::from_str(&r.to_query()).unwrap();
                prop_assert_eq!(StripeRequest::from_query(q), Ok(r.clone()));
                let q: StripeQuery = serde_urlencoded::from_str(&r.stripe.to_query()).unwrap();
                prop_assert_eq!(StripeRef::from_query(q), Ok(r.stripe));
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
