//! The OCI distribution pull API on the mirror port, for containerd and
//! other registry clients. Manifests and blobs are content addressed, so
//! they travel through the stripe mesh like any object, identified by
//! their digest: the registry sees each once for the whole fleet. Tags are
//! resolved at the origin (HEAD), reused for a short TTL, and served stale
//! while the origin fails.

pub mod access;
pub mod catalog;
mod offline;

use crate::node::Node;
use crate::object::response::unsatisfiable;
use crate::object::{ByteRange, ObjectError, open_spec, open_spec_guessed};
use crate::origin::OriginError;
use crate::origin::registries::Upstream;
use crate::proto::ObjectSpec;
use axum::Router;
use axum::body::Body;
use axum::extract::{Query, State};
use axum::response::Response;
use catalog::{Catalog, Freshness, Known};
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri, header};
use shoal_oci::manifest::{MAX_MANIFEST, Manifest};
use shoal_oci::{Digest, ErrorCode, Name, OciError, Reference, Route, route};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// `Docker-Content-Digest`.
const CONTENT_DIGEST: &str = "docker-content-digest";

struct Mirror {
    node: Arc<Node>,
    catalog: Catalog,
    access: access::Access,
}

/// The router of the mirror port.
pub fn router(node: Arc<Node>) -> Router {
    let c = &node.cfg.mirror;
    let catalog = Catalog::new(
        Duration::from_millis(c.tag_ttl_ms),
        Duration::from_millis(c.stale_if_error_ms),
    );
    let access = access::Access::new(
        c.trust_local_clients,
        Duration::from_millis(c.access_ttl_ms),
        Duration::from_millis(c.stale_if_error_ms),
    );
    let m = Arc::new(Mirror {
        node,
        catalog,
        access,
    });
    Router::new().fallback(handle).with_state(m)
}

fn oci(e: OciError) -> Response {
    let mut r = Response::new(Body::from(e.body()));
    *r.status_mut() = StatusCode::from_u16(e.status).unwrap_or(StatusCode::BAD_GATEWAY);
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

/// An origin failure as the client should see it.
fn from_origin(e: OriginError, unknown: ErrorCode) -> OciError {
    match e {
        OriginError::Status(404) => OciError::new(404, unknown, "not found at the origin"),
        OriginError::Status(401) => OciError::new(
            401,
            ErrorCode::Unauthorized,
            "the origin refused this agent's credentials (or it has none)",
        ),
        OriginError::Status(403) => {
            OciError::new(403, ErrorCode::Denied, "the origin denied access")
        }
        OriginError::Status(429) => OciError::new(
            429,
            ErrorCode::Toomanyrequests,
            "the origin is rate limiting",
        ),
        other => OciError::new(502, ErrorCode::Unavailable, other.to_string()),
    }
}

async fn handle(
    State(m): State<Arc<Mirror>>,
    method: Method,
    uri: Uri,
    query: Result<Query<HashMap<String, String>>, axum::extract::rejection::QueryRejection>,
    headers: HeaderMap,
) -> Response {
    let Ok(Query(query)) = query else {
        return oci(OciError::new(
            400,
            ErrorCode::Unsupported,
            "the query string is not valid (expected ?ns=<registry>)",
        ));
    };
    let head = method == Method::HEAD;
    if method != Method::GET && !head {
        return oci(OciError::new(
            405,
            ErrorCode::Unsupported,
            "this is a pull-through mirror: only GET and HEAD are served",
        ));
    }
    if m.node.draining.load(std::sync::atomic::Ordering::SeqCst) {
        return oci(OciError::new(503, ErrorCode::Unavailable, "draining"));
    }
    let result = match route(uri.path())
        .map_err(OciError::from)
        .and_then(sha256_only)
    {
        Err(e) => Err(e),
        Ok(Route::Base) => built(
            Response::builder()
                .header("docker-distribution-api-version", "registry/2.0")
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from("{}")),
        ),
        Ok(Route::Unsupported(what)) => Err(OciError::new(
            405,
            ErrorCode::Unsupported,
            format!("this is a pull-through mirror: {what} is not offered"),
        )),
        Ok(Route::Manifest(name, reference)) => {
            let path = format!("{name}/manifests/{reference}");
            let unknown = ErrorCode::ManifestUnknown;
            match m.admit(query.get("ns"), (&path, unknown), &headers).await {
                Err(e) => Err(e),
                Ok((up, _)) => m.manifest(&up, &name, reference, head).await,
            }
        }
        Ok(Route::Blob(name, digest)) => {
            let path = format!("{name}/blobs/{digest}");
            let unknown = ErrorCode::BlobUnknown;
            match m.admit(query.get("ns"), (&path, unknown), &headers).await {
                Err(e) => Err(e),
                Ok((up, size)) => {
                    if let Some(size) = size {
                        let media_type = None;
                        m.catalog.learn(&digest, Known { size, media_type });
                    }
                    m.blob(&up, &name, digest, head, &headers).await
                }
            }
        }
    };
    result.unwrap_or_else(|e| {
        let challenge = e.status == 401;
        let mut r = oci(e);
        if challenge {
            let v = HeaderValue::from_static(access::CHALLENGE);
            r.headers_mut().insert(header::WWW_AUTHENTICATE, v);
        }
        r
    })
}

/// Refuses digests other than SHA-256: the mesh checks objects against
/// SHA-256 only, so anything else goes to the registry directly (the
/// error makes containerd do that).
fn sha256_only(r: Route) -> Result<Route, OciError> {
    let d = match &r {
        Route::Blob(_, d) | Route::Manifest(_, Reference::Digest(d)) => d,
        _ => return Ok(r),
    };
    if d.algorithm() == shoal_oci::Algorithm::Sha256 {
        Ok(r)
    } else {
        Err(OciError::new(
            400,
            ErrorCode::Unsupported,
            format!("{d}: this mirror serves sha256 content only"),
        ))
    }
}

impl Mirror {
    /// The registry a request names, once the access check lets the
    /// client read `<name>/...` (`path`, with the error code for one the
    /// registry lacks) there: with the blob's size if the check learned it.
    async fn admit(
        &self,
        ns: Option<&String>,
        (path, unknown): (&str, ErrorCode),
        headers: &HeaderMap,
    ) -> Result<(Upstream, access::Granted), OciError> {
        let up = self.upstream(ns)?;
        let authorization = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        let node = &self.node;
        let size = self
            .access
            .check(
                &node.origin,
                &node.metrics,
                (&up.url(path), unknown),
                authorization,
            )
            .await?;
        Ok((up, size))
    }

    fn upstream(&self, ns: Option<&String>) -> Result<Upstream, OciError> {
        self.node
            .origin
            .registries()
            .select(ns.map(String::as_str))
            .cloned()
            .ok_or_else(|| {
                OciError::new(
                    404,
                    ErrorCode::NameUnknown,
                    format!(
                        "registry {} is not mirrored here; ask it directly",
                        ns.map_or("(default)", String::as_str)
                    ),
                )
            })
    }

    /// HEADs a manifest at the origin: its digest, size and type.
    async fn head_manifest(&self, url: &str) -> Result<(Digest, Known), OriginError> {
        let origin = &self.node.origin;
        let client = origin.client();
        let resp = origin
            .registries()
            .send(client, url, || client.head(url))
            .await?;
        if !resp.status().is_success() {
            return Err(OriginError::Status(resp.status().as_u16()));
        }
        let h = resp.headers();
        let text = |k: &str| h.get(k).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let size = text(header::CONTENT_LENGTH.as_str())
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| OriginError::Protocol("manifest HEAD gave no Content-Length".into()))?;
        let digest = text(CONTENT_DIGEST)
            .and_then(|d| Digest::parse(&d).ok())
            .ok_or_else(|| {
                OriginError::Protocol("manifest HEAD gave no valid Docker-Content-Digest".into())
            })?;
        let media_type = text(header::CONTENT_TYPE.as_str())
            .filter(|t| shoal_oci::manifest::valid_media_type(t));
        Ok((digest, Known { size, media_type }))
    }

    async fn resolve_tag(
        &self,
        up: &Upstream,
        name: &Name,
        tag: &str,
    ) -> Result<(Digest, Known), OciError> {
        let cached = self.catalog.tag(&up.host, name.as_str(), tag);
        if let Some((r, Freshness::Fresh)) = &cached {
            return Ok((r.digest.clone(), r.known.clone()));
        }
        let url = up.url(&format!("{name}/manifests/{tag}"));
        match self.head_manifest(&url).await {
            Ok((digest, known)) => {
                self.catalog
                    .set_tag(&up.host, name.as_str(), tag, digest.clone(), known.clone());
                Ok((digest, known))
            }
            Err(e) => match cached {
                Some((r, _)) if e.transient() => {
                    tracing::warn!(%url, "origin failed ({e}); serving the tag's last resolution");
                    Ok((r.digest, r.known))
                }
                _ => Err(from_origin(e, ErrorCode::ManifestUnknown)),
            },
        }
    }

    async fn manifest(
        &self,
        up: &Upstream,
        name: &Name,
        reference: Reference,
        head: bool,
    ) -> Result<Response, OciError> {
        let (digest, known) = match reference {
            Reference::Tag(t) => self.resolve_tag(up, name, &t).await?,
            Reference::Digest(d) => match self.catalog.known(&d) {
                Some(k) if k.media_type.is_some() => (d, k),
                _ => {
                    let k = self.manifest_by_digest(up, name, &d).await?;
                    (d, k)
                }
            },
        };
        if known.size > MAX_MANIFEST {
            return Err(OciError::new(
                502,
                ErrorCode::Unavailable,
                format!(
                    "manifest of {} bytes is larger than {MAX_MANIFEST}",
                    known.size
                ),
            ));
        }
        let media_type = known
            .media_type
            .clone()
            .unwrap_or_else(|| shoal_oci::manifest::OCI_MANIFEST.into());
        let builder = Response::builder()
            .header(header::CONTENT_TYPE, media_type.as_str())
            .header(header::CONTENT_LENGTH, known.size)
            .header(CONTENT_DIGEST, digest.to_string());
        if head {
            return built(builder.body(Body::empty()));
        }
        let bytes = self
            .fetch_manifest(up, name, &digest, known.size, false)
            .await?;
        if let Ok(parsed) = Manifest::parse(&bytes) {
            for d in parsed.references {
                self.catalog.learn(
                    &d.digest,
                    Known {
                        size: d.size,
                        media_type: None,
                    },
                );
            }
        }
        built(builder.body(Body::from(bytes)))
    }

    /// Size and type of a manifest named by digest that this node has not
    /// served: from an origin HEAD, or, while the origin fails, from the
    /// nodes holding its stripes and the manifest's own `mediaType`.
    async fn manifest_by_digest(
        &self,
        up: &Upstream,
        name: &Name,
        d: &Digest,
    ) -> Result<Known, OciError> {
        let url = up.url(&format!("{name}/manifests/{d}"));
        let known = match self.head_manifest(&url).await {
            Ok((got, k)) if &got == d => k,
            Ok((got, _)) => {
                return Err(OciError::new(
                    502,
                    ErrorCode::Unavailable,
                    format!("the origin answered {got} for manifest {d}"),
                ));
            }
            Err(e) if e.transient() => {
                let spec = ObjectSpec {
                    url,
                    size: 0,
                    validator: None,
                    digest: Some(d.to_string()),
                };
                let Some(size) = offline::size_from_mesh(&self.node, &spec).await else {
                    return Err(from_origin(e, ErrorCode::ManifestUnknown));
                };
                tracing::warn!(%d, "origin failed ({e}); serving the manifest from the mesh");
                // The size is a guess: a mismatch fails this read only.
                let bytes = self.fetch_manifest(up, name, d, size, true).await?;
                let parsed = Manifest::parse(&bytes).map_err(|e| {
                    OciError::new(502, ErrorCode::Unavailable, format!("manifest {d}: {e}"))
                })?;
                Known {
                    size,
                    media_type: Some(parsed.media_type),
                }
            }
            Err(e) => return Err(from_origin(e, ErrorCode::ManifestUnknown)),
        };
        self.catalog.learn(d, known.clone());
        Ok(known)
    }

    /// A manifest's bytes through the mesh, checked against its digest.
    async fn fetch_manifest(
        &self,
        up: &Upstream,
        name: &Name,
        digest: &Digest,
        size: u64,
        guessed: bool,
    ) -> Result<Vec<u8>, OciError> {
        let spec = ObjectSpec {
            url: up.url(&format!("{name}/manifests/{digest}")),
            size,
            validator: None,
            digest: Some(digest.to_string()),
        };
        let unavailable = |m: String| OciError::new(502, ErrorCode::Unavailable, m);
        if size > MAX_MANIFEST {
            return Err(unavailable(format!(
                "manifest {digest} of {size} bytes is larger than {MAX_MANIFEST}"
            )));
        }
        let read = if guessed {
            open_spec_guessed(&self.node, spec)
        } else {
            open_spec(&self.node, spec, None)
        };
        let mut read = read.map_err(|e| unavailable(e.to_string()))?;
        let mut bytes = Vec::with_capacity(size as usize);
        while let Some(chunk) = read.body.recv().await {
            let chunk = chunk.map_err(|e| unavailable(format!("manifest {digest}: {e}")))?;
            bytes.extend_from_slice(&chunk);
        }
        if bytes.len() as u64 != size || !digest.matches(&bytes) {
            return Err(unavailable(format!(
                "manifest {digest}: the bytes received do not match the digest"
            )));
        }
        Ok(bytes)
    }

    async fn blob(
        &self,
        up: &Upstream,
        name: &Name,
        digest: Digest,
        head: bool,
        headers: &HeaderMap,
    ) -> Result<Response, OciError> {
        let url = up.url(&format!("{name}/blobs/{digest}"));
        let size = match self.catalog.known(&digest) {
            Some(k) => k.size,
            None => {
                let meta = self
                    .node
                    .origin
                    .head(&url)
                    .await
                    .map_err(|e| from_origin(e, ErrorCode::BlobUnknown))?;
                self.catalog.learn(
                    &digest,
                    Known {
                        size: meta.size,
                        media_type: None,
                    },
                );
                meta.size
            }
        };
        let range = match headers.get(header::RANGE) {
            None => None,
            Some(v) => Some(v.to_str().ok().and_then(ByteRange::parse).ok_or_else(|| {
                OciError::new(
                    416,
                    ErrorCode::RangeInvalid,
                    "only one range of the form bytes=a-b, bytes=a- or bytes=-n is served",
                )
            })?),
        };
        if head {
            return built(
                Response::builder()
                    .header(header::CONTENT_TYPE, "application/octet-stream")
                    .header(header::CONTENT_LENGTH, size)
                    .header(header::ACCEPT_RANGES, "bytes")
                    .header(CONTENT_DIGEST, digest.to_string())
                    .body(Body::empty()),
            );
        }
        let spec = ObjectSpec {
            url,
            size,
            validator: None,
            digest: Some(digest.to_string()),
        };
        let read = match open_spec(&self.node, spec, range) {
            Ok(r) => r,
            Err(ObjectError::Range { size }) => {
                let mut r = oci(OciError::new(
                    416,
                    ErrorCode::RangeInvalid,
                    format!("range not satisfiable for a blob of {size} bytes"),
                ));
                let (k, v) = unsatisfiable(size);
                r.headers_mut().insert(k, v);
                return Ok(r);
            }
            Err(e) => return Err(OciError::new(502, ErrorCode::Unavailable, e.to_string())),
        };
        built(read.into_response(
            range.is_some(),
            &[
                (HeaderName::from_static(CONTENT_DIGEST), digest.to_string()),
                (header::CACHE_CONTROL, "max-age=31536000".into()),
            ],
        ))
    }
}

/// A response whose headers could all be encoded, or an error response:
/// never an empty 200 in its place.
fn built(r: Result<Response, http::Error>) -> Result<Response, OciError> {
    r.map_err(|e| {
        OciError::new(
            502,
            ErrorCode::Unavailable,
            format!("the response could not be built: {e}"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A header the builder refuses (a media type with a line break) is
    /// a 502 with the reason, never an empty 200.
    #[test]
    fn a_response_that_cannot_be_built_is_an_error_not_an_empty_200() {
        let r = built(
            Response::builder()
                .header(header::CONTENT_TYPE, "application/json\nX-Evil: 1")
                .body(Body::empty()),
        );
        let e = r.err().map(|e| (e.status, e.message));
        assert!(
            e.as_ref()
                .is_some_and(|(s, m)| *s == 502 && m.contains("could not be built")),
            "{e:?}"
        );
    }
}
