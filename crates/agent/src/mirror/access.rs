//! Who may read what through the mirror port. The mesh holds content by
//! digest, whoever first asked for it, so the mirror must not hand a
//! private repository's manifests and blobs to a local client the
//! registry would refuse. Before any byte, each request's URL is put to
//! the registry itself, as the client: first anonymously (a public
//! repository costs nothing more), then, if the registry wants
//! credentials, with the credentials the client sent. A client that sent
//! none gets a `401` with a Basic challenge, which is what makes
//! containerd send a pull secret's credentials to a mirror at all; one
//! whose credentials the registry refuses gets a `403`. Either way
//! containerd moves on to the registry itself (the `server` in
//! `hosts.toml`), which checks the pull secret. The content is still
//! fetched with the agent's own credentials: a client's are used only for
//! this question, are kept only as a keyed digest in the verdict cache,
//! and never reach a peer, a log or a metric.
//!
//! Verdicts are per URL (repository and digest or tag), not per
//! repository: a registry answers for a digest only in a repository that
//! holds it, and the mirror must too, or any reader of a public
//! repository could name a private layer's digest through it.

use crate::metrics::{AccessResult, Metrics};
use crate::origin::Origin;
use crate::origin::registries::Identity;
use hashlink::LruCache;
use http::{StatusCode, header};
use shoal_oci::auth::Credential;
use shoal_oci::{ErrorCode, OciError};
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

/// Verdicts kept at once (each is a URL and a reader).
const VERDICTS: usize = 16_384;

/// What the registry said about one reader and one URL.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Verdict {
    /// It serves the URL to this reader (with the size it gave, if any).
    Allowed(Option<u64>),
    /// It wants other credentials (401) or refuses these (403).
    Refused,
    /// It has nothing at that URL for this reader.
    Missing,
}

/// A verdict's reader: anyone, or a client credential by keyed digest.
type Reader = Option<[u8; 32]>;

/// The mirror's access checks and their cache.
pub struct Access {
    trust_local: bool,
    ttl: Duration,
    stale: Duration,
    /// Per-process key for credential digests: a digest is useless
    /// outside this process, and equal credentials still match.
    key: [u8; 32],
    verdicts: Mutex<LruCache<(Reader, String), (Verdict, Instant)>>,
}

/// The outcome of a check: serve, with the blob size learned if any.
pub type Granted = Option<u64>;

impl Access {
    /// Checks that reuse a verdict for `ttl` (and, while the registry
    /// fails, for `stale` past that); with `trust_local`, every local
    /// client is trusted and nothing is checked.
    pub fn new(trust_local: bool, ttl: Duration, stale: Duration) -> Access {
        use rand::TryRng;
        let mut key = [0u8; 32];
        if rand::rngs::SysRng.try_fill_bytes(&mut key).is_err() {
            // No OS randomness: a key from the clock and the process id
            // still keeps digests from matching outside this process.
            let seed = format!("{:?}{}", std::time::SystemTime::now(), std::process::id());
            key = *blake3::hash(seed.as_bytes()).as_bytes();
        }
        Access {
            trust_local,
            ttl,
            stale,
            key,
            verdicts: Mutex::new(LruCache::new(VERDICTS)),
        }
    }

    /// May the client that sent `authorization` read `url` (a manifest or
    /// blob URL of a mirrored registry, `unknown` being the error code
    /// for one the registry does not have)? `Ok` with the size the
    /// registry gave, or the error to answer with before any byte.
    pub async fn check(
        &self,
        origin: &Origin,
        metrics: &Metrics,
        (url, unknown): (&str, ErrorCode),
        authorization: Option<&str>,
    ) -> Result<Granted, OciError> {
        if self.trust_local {
            return Ok(None);
        }
        let result = self.decide(origin, url, authorization).await;
        let result = result.map_err(|e| match e.status {
            404 => OciError::new(404, unknown, e.message),
            _ => e,
        });
        let label = match &result {
            Ok((_, how)) => *how,
            Err(e) if e.status == 401 => AccessResult::Challenged,
            Err(e) if e.status == 403 => AccessResult::Denied,
            Err(e) if e.status == 404 => AccessResult::Missing,
            Err(_) => AccessResult::Unavailable,
        };
        metrics.mirror_access(label);
        result.map(|(size, _)| size)
    }

    /// The decision, and whether it was anyone's or this client's.
    async fn decide(
        &self,
        origin: &Origin,
        url: &str,
        authorization: Option<&str>,
    ) -> Result<(Granted, AccessResult), OciError> {
        match self.verdict(origin, url, None).await? {
            Verdict::Allowed(size) => return Ok((size, AccessResult::Anonymous)),
            // Some registries hide private repositories with a 404.
            Verdict::Missing if authorization.is_none() => return Err(missing()),
            Verdict::Missing | Verdict::Refused => {}
        }
        let Some(cred) = authorization.and_then(Credential::from_basic) else {
            return Err(OciError::new(
                401,
                ErrorCode::Unauthorized,
                "this repository is not public: send credentials the registry accepts for it",
            ));
        };
        match self.verdict(origin, url, Some(&cred)).await? {
            Verdict::Allowed(size) => Ok((size, AccessResult::Granted)),
            Verdict::Missing => Err(missing()),
            Verdict::Refused => Err(OciError::new(
                403,
                ErrorCode::Denied,
                "the registry refuses these credentials for this repository",
            )),
        }
    }

    fn digest(&self, c: &Credential) -> [u8; 32] {
        let mut h = blake3::Hasher::new_keyed(&self.key);
        h.update(c.username.as_bytes());
        h.update(&[0]);
        h.update(c.password.as_bytes());
        *h.finalize().as_bytes()
    }

    /// The registry's verdict on `url` for `cred` (or anyone): cached,
    /// else asked with a HEAD; while the registry fails, a verdict up to
    /// `stale` old still holds, and without one the mirror fails closed.
    async fn verdict(
        &self,
        origin: &Origin,
        url: &str,
        cred: Option<&Credential>,
    ) -> Result<Verdict, OciError> {
        let slot = (cred.map(|c| self.digest(c)), url.to_owned());
        let cached = self.lock().get(&slot).copied();
        if let Some((v, at)) = cached
            && at.elapsed() < self.ttl
        {
            return Ok(v);
        }
        let who = cred.map_or(Identity::Anonymous, Identity::Client);
        let client = origin.client();
        let asked = origin
            .registries()
            .send_as(client, url, who, || client.head(url))
            .await;
        let fresh = match asked {
            Ok(resp) => match resp.status() {
                s if s.is_success() => Some(Verdict::Allowed(
                    resp.headers()
                        .get(header::CONTENT_LENGTH)
                        .and_then(|v| v.to_str().ok()?.parse().ok()),
                )),
                StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => Some(Verdict::Refused),
                StatusCode::NOT_FOUND => Some(Verdict::Missing),
                _ => None,
            },
            // The token endpoint refused the credentials.
            Err(crate::origin::OriginError::Status(401 | 403)) => Some(Verdict::Refused),
            Err(_) => None,
        };
        match (fresh, cached) {
            (Some(v), _) => {
                self.lock().insert(slot, (v, Instant::now()));
                Ok(v)
            }
            (None, Some((v, at))) if at.elapsed() < self.ttl + self.stale => {
                tracing::warn!("registry unreachable; reusing an access verdict");
                Ok(v)
            }
            (None, _) => Err(OciError::new(
                503,
                ErrorCode::Unavailable,
                "the registry could not say whether this client may read this; ask it directly",
            )),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LruCache<(Reader, String), (Verdict, Instant)>> {
        self.verdicts.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn missing() -> OciError {
    OciError::new(404, ErrorCode::NameUnknown, "not found at the registry")
}

/// The `WWW-Authenticate` a `401` from the mirror carries: Basic, so a
/// client with credentials for the registry sends them.
pub const CHALLENGE: &str = "Basic realm=\"shoal mirror\"";
