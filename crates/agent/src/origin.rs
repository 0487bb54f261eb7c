//! The origin client: HTTP(S) objects read with Range requests, through
//! reqwest and rustls, with a bound on concurrent requests per agent.
//! Every URL it reads passes the origin allow-list first ([`allow`]),
//! and every address it connects to the policy's address rules
//! ([`guard`]).

use crate::metrics::Metrics;
pub mod allow;
pub mod guard;
pub mod registries;

use crate::proto::ObjectSpec;
use allow::{OriginPolicy, Refused};
use bytes::Bytes;
use http::{StatusCode, header};
use registries::{Identity, Registries};
use std::path::Path;
use std::sync::Arc;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::timing::ORIGIN_STALL;

/// What an origin said no with, or how talking to it failed.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum OriginError {
    /// An HTTP status that is not success.
    #[error("origin answered {0}")]
    Status(u16),
    /// Network or TLS trouble.
    #[error("origin transport: {0}")]
    Transport(String),
    /// The object is not what the caller described (size, validator).
    #[error("origin object changed: {0}")]
    Changed(String),
    /// The origin broke the protocol (no size, wrong range).
    #[error("origin protocol: {0}")]
    Protocol(String),
    /// The TLS settings are unusable.
    #[error("TLS: {0}")]
    Tls(String),
    /// The URL, an address it resolved to, or a redirect is not allowed.
    #[error(transparent)]
    Refused(#[from] Refused),
}

impl OriginError {
    /// Whether asking again (here or elsewhere) may help.
    pub fn transient(&self) -> bool {
        match self {
            OriginError::Status(s) => *s >= 500 || *s == 408 || *s == 429,
            OriginError::Transport(_) => true,
            OriginError::Changed(_)
            | OriginError::Protocol(_)
            | OriginError::Tls(_)
            | OriginError::Refused(_) => false,
        }
    }
}

/// An object's size and validator, from a HEAD.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectMeta {
    /// Size in bytes.
    pub size: u64,
    /// ETag, else Last-Modified.
    pub validator: Option<String>,
}

/// The client every origin request goes through.
#[derive(Clone)]
pub struct Origin {
    client: reqwest::Client,
    limit: Arc<Semaphore>,
    metrics: Arc<Metrics>,
    /// Mirrored registries: their URLs get registry authentication.
    registries: Arc<Registries>,
    /// Which URLs and addresses may be read.
    policy: Arc<OriginPolicy>,
}

/// A response body being read, holding one of the concurrency slots.
pub struct OriginBody {
    resp: reqwest::Response,
    metrics: Arc<Metrics>,
    _permit: OwnedSemaphorePermit,
}

/// A transport error with its causes, so a TLS or DNS failure says what
/// went wrong rather than only "error sending request"; a refusal by the
/// resolver or the redirect policy stays a refusal.
pub(crate) fn transport(e: reqwest::Error) -> OriginError {
    match guard::refusal(&e) {
        Some(r) => OriginError::Refused(r),
        None => OriginError::Transport(error_chain(&e)),
    }
}

/// An error's message followed by each cause that adds something.
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut msg = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !msg.contains(&text) {
            msg.push_str(": ");
            msg.push_str(&text);
        }
        cause = c.source();
    }
    msg
}

fn validator(headers: &http::HeaderMap) -> Option<String> {
    headers
        .get(header::ETAG)
        .or_else(|| headers.get(header::LAST_MODIFIED))
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// The origin rules an agent's settings make: its allow-list, its
/// registries, and every address it listens or is reached at.
pub fn policy_for(c: &crate::AgentConfig) -> Result<OriginPolicy, String> {
    let bases: Vec<String> = c.mirror.registries.iter().map(|r| r.base_url()).collect();
    let (gossip_bind, gossip_advertise) = c.gossip_addrs();
    let own = [
        c.listen,
        c.api_listen,
        c.mirror.listen,
        c.data_addr(),
        gossip_bind,
        gossip_advertise,
    ]
    .map(|a| a.ip());
    OriginPolicy::new(&c.origins.allow, &bases, &own)
}

impl Origin {
    /// A client allowing `concurrency` requests at once, reading only
    /// what `policy` allows; URLs of `registries` are sent with the
    /// authentication each asks for. TLS trusts the system's roots and
    /// the certificates in `ca_file`.
    pub fn new(
        concurrency: usize,
        metrics: Arc<Metrics>,
        registries: Arc<Registries>,
        policy: Arc<OriginPolicy>,
        ca_file: Option<&Path>,
    ) -> Result<Self, OriginError> {
        crate::install_crypto_provider();
        // No proxy from the environment: a proxy would resolve names
        // itself, past the address rules.
        let mut builder = reqwest::Client::builder()
            .no_proxy()
            .dns_resolver(guard::GuardedResolver::new(policy.clone()))
            .redirect(guard::redirect_policy(policy.clone()))
            .connect_timeout(crate::timing::ORIGIN_CONNECT)
            .pool_idle_timeout(crate::timing::POOL_IDLE)
            .user_agent(concat!("shoal/", env!("CARGO_PKG_VERSION")));
        if let Some(path) = ca_file {
            let bad = |e: String| OriginError::Tls(format!("CA file {}: {e}", path.display()));
            let pem = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
            let certs =
                reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| bad(e.to_string()))?;
            if certs.is_empty() {
                return Err(bad("no PEM certificate in it".into()));
            }
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        let client = builder.build().map_err(transport)?;
        Ok(Origin {
            client,
            limit: Arc::new(Semaphore::new(concurrency)),
            metrics,
            registries,
            policy,
        })
    }

    /// The underlying HTTP client.
    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// The mirrored registries.
    pub fn registries(&self) -> &Registries {
        &self.registries
    }

    async fn permit(&self) -> Result<OwnedSemaphorePermit, OriginError> {
        self.limit
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| OriginError::Transport("origin client closed".into()))
    }

    /// Refuses a URL the allow-list does not cover, counting it.
    fn admit(&self, url: &str) -> Result<(), OriginError> {
        self.policy.admit(url).map(drop).map_err(|r| {
            self.metrics.origin_refused.inc();
            tracing::warn!("{r}");
            OriginError::Refused(r)
        })
    }

    /// Counts a refusal by the resolver or the redirect policy.
    fn count_refusal(&self, e: &OriginError) {
        if let OriginError::Refused(r) = e {
            self.metrics.origin_refused.inc();
            tracing::warn!("{r}");
        }
    }

    /// The object's size and validator.
    pub async fn head(&self, url: &str) -> Result<ObjectMeta, OriginError> {
        self.head_as(url, Identity::Node).await
    }

    /// [`Origin::head`] with the credentials of `who` (for a registry URL).
    pub async fn head_as(&self, url: &str, who: Identity<'_>) -> Result<ObjectMeta, OriginError> {
        self.admit(url)?;
        let _permit = self.permit().await?;
        self.metrics.origin_requests.inc();
        let resp = self
            .registries
            .send_as(&self.client, url, who, || self.client.head(url))
            .await
            .inspect_err(|e| self.count_refusal(e))?;
        if !resp.status().is_success() {
            return Err(OriginError::Status(resp.status().as_u16()));
        }
        let size = resp
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| OriginError::Protocol("HEAD gave no Content-Length".into()))?;
        Ok(ObjectMeta {
            size,
            validator: validator(resp.headers()),
        })
    }

    /// Bytes `[start, end)` of `object`, checked against its size and
    /// validator.
    pub async fn range(
        &self,
        object: &ObjectSpec,
        start: u64,
        end: u64,
    ) -> Result<OriginBody, OriginError> {
        self.admit(&object.url)?;
        let permit = self.permit().await?;
        self.metrics.origin_requests.inc();
        let range = format!("bytes={start}-{}", end - 1);
        let resp = self
            .registries
            .send(&self.client, &object.url, || {
                self.client
                    .get(&object.url)
                    .header(header::RANGE, range.as_str())
            })
            .await
            .inspect_err(|e| self.count_refusal(e))?;
        let whole = start == 0 && end == object.size;
        match resp.status() {
            StatusCode::PARTIAL_CONTENT => {
                let want = format!("bytes {start}-{}/{}", end - 1, object.size);
                let got = resp
                    .headers()
                    .get(header::CONTENT_RANGE)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("");
                if got != want {
                    return Err(OriginError::Changed(format!(
                        "asked for {want:?}, got Content-Range {got:?}"
                    )));
                }
            }
            StatusCode::OK if whole => {}
            StatusCode::OK => {
                return Err(OriginError::Protocol(
                    "origin ignores Range requests".into(),
                ));
            }
            s => return Err(OriginError::Status(s.as_u16())),
        }
        if let (Some(want), Some(got)) = (&object.validator, validator(resp.headers()))
            && *want != got
        {
            return Err(OriginError::Changed(format!(
                "validator {want:?} became {got:?}"
            )));
        }
        Ok(OriginBody {
            resp,
            metrics: self.metrics.clone(),
            _permit: permit,
        })
    }
}

impl OriginBody {
    /// The next piece of the body; `None` at its end.
    pub async fn chunk(&mut self) -> Result<Option<Bytes>, OriginError> {
        match tokio::time::timeout(ORIGIN_STALL, self.resp.chunk()).await {
            Err(_) => Err(OriginError::Transport(format!(
                "no bytes for {ORIGIN_STALL:?}"
            ))),
            Ok(Err(e)) => Err(transport(e)),
            Ok(Ok(Some(b))) => {
                self.metrics.origin_bytes.inc_by(b.len() as u64);
                Ok(Some(b))
            }
            Ok(Ok(None)) => Ok(None),
        }
    }
}
