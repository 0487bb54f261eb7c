//! This node's topology labels from its Kubernetes Node object.
//!
//! In a DaemonSet the agent knows its node's name (the downward API's
//! `spec.nodeName`, given as `name`) and reads that Node through the API
//! server with its service account: one `GET /api/v1/nodes/{name}`, which
//! the chart's RBAC allows and nothing more. The labels named by
//! `label_keys` (widest first: region, zone, then site-specific row and
//! rack keys) become the node's topology labels. The list stops at the
//! first key the Node lacks: a rack name means nothing without its zone.
//!
//! One request at start is all this needs, so it is a plain HTTPS GET with
//! reqwest rather than a full Kubernetes client (kube-rs with k8s-openapi
//! would add minutes of compile time for one call). The in-cluster
//! conventions it follows are kube-rs's: `KUBERNETES_SERVICE_HOST` and
//! `_PORT`, the service account token (read on each attempt, since
//! kubelet rotates it) and the cluster CA.

use crate::config::kubernetes::KubernetesConfig;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Why the Node's labels could not be read.
#[derive(Debug, thiserror::Error)]
pub enum KubeError {
    /// No API server URL was set and the in-cluster variables are absent.
    #[error(
        "no API server: set kubernetes.api_server or run in a pod (KUBERNETES_SERVICE_HOST is unset)"
    )]
    NoApiServer,
    /// An API server URL that is not https: the token would go in clear.
    #[error("kubernetes.api_server {0:?} is not an https:// URL")]
    Insecure(String),
    /// A file of the service account could not be read.
    #[error("reading {path}: {message}")]
    File {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// The request failed before an answer.
    #[error("GET {url}: {message}")]
    Transport {
        /// The URL asked.
        url: String,
        /// What went wrong.
        message: String,
    },
    /// The API server answered with an error status.
    #[error("GET {url}: HTTP {status}: {message}")]
    Status {
        /// The URL asked.
        url: String,
        /// The status.
        status: u16,
        /// The start of the body (the API's `Status` message).
        message: String,
    },
    /// The body is not a Node, or not this node.
    #[error("GET {url}: {message}")]
    Body {
        /// The URL asked.
        url: String,
        /// What is wrong.
        message: String,
    },
}

impl KubeError {
    /// Whether another attempt may succeed (network trouble, 429, 5xx).
    fn transient(&self) -> bool {
        match self {
            KubeError::Transport { .. } => true,
            KubeError::Status { status, .. } => *status == 429 || *status >= 500,
            _ => false,
        }
    }
}

/// The part of a Node object read here.
#[derive(Deserialize)]
struct Node {
    metadata: Metadata,
}

#[derive(Deserialize)]
struct Metadata {
    name: String,
    #[serde(default)]
    labels: BTreeMap<String, String>,
}

/// What the lookup found: the labels, widest first, and the keys the Node
/// lacked (the first of them cut the list short).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Topology {
    /// The topology labels.
    pub labels: Vec<String>,
    /// Keys of `label_keys` the Node does not carry.
    pub missing: Vec<String>,
}

/// Picks `keys` out of a Node's labels, stopping at the first missing one.
pub fn topology_of(node_labels: &BTreeMap<String, String>, keys: &[String]) -> Topology {
    let mut labels = Vec::new();
    let mut missing = Vec::new();
    for k in keys {
        match node_labels.get(k).filter(|v| !v.is_empty()) {
            Some(v) if missing.is_empty() => labels.push(v.clone()),
            Some(_) => {}
            None => missing.push(k.clone()),
        }
    }
    Topology { labels, missing }
}

async fn read_file(path: &Path) -> Result<Vec<u8>, KubeError> {
    tokio::fs::read(path).await.map_err(|e| KubeError::File {
        path: path.to_owned(),
        message: e.to_string(),
    })
}

fn api_server(cfg: &KubernetesConfig) -> Result<String, KubeError> {
    if let Some(u) = &cfg.api_server {
        // The service account token must never cross the network in clear.
        if !u.starts_with("https://") {
            return Err(KubeError::Insecure(u.clone()));
        }
        return Ok(u.trim_end_matches('/').to_owned());
    }
    let host = std::env::var("KUBERNETES_SERVICE_HOST").map_err(|_| KubeError::NoApiServer)?;
    let port = std::env::var("KUBERNETES_SERVICE_PORT").unwrap_or_else(|_| "443".into());
    // An IPv6 service address needs brackets in a URL.
    let host = if host.contains(':') {
        format!("[{host}]")
    } else {
        host
    };
    Ok(format!("https://{host}:{port}"))
}

/// A Node name as one URL path segment (names are DNS subdomains; anything
/// else is escaped rather than trusted).
fn segment(name: &str) -> String {
    let dots_only = name.bytes().all(|b| b == b'.');
    name.bytes()
        .map(|b| match b {
            b'.' if dots_only => "%2E".to_owned(),
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'.' | b'_' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Largest Node object read (they are a few KiB; images lists can grow).
const MAX_BODY: usize = 4 << 20;

async fn get_once(
    client: &reqwest::Client,
    url: &str,
    cfg: &KubernetesConfig,
    name: &str,
) -> Result<Topology, KubeError> {
    let token = String::from_utf8_lossy(&read_file(&cfg.token_file).await?)
        .trim()
        .to_owned();
    let transport = |e: reqwest::Error| KubeError::Transport {
        url: url.to_owned(),
        message: crate::origin::error_chain(&e),
    };
    let mut resp = client
        .get(url)
        .bearer_auth(token)
        .header("accept", "application/json")
        .send()
        .await
        .map_err(transport)?;
    let status = resp.status().as_u16();
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(transport)? {
        if body.len() + chunk.len() > MAX_BODY {
            return Err(KubeError::Body {
                url: url.to_owned(),
                message: format!("answer larger than {MAX_BODY} bytes"),
            });
        }
        body.extend_from_slice(&chunk);
    }
    if status != 200 {
        let message = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v.get("message")?.as_str().map(str::to_owned))
            .unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned());
        // It ends up in logs and /readyz: one short line.
        let message = message
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .take(300)
            .collect();
        return Err(KubeError::Status {
            url: url.to_owned(),
            status,
            message,
        });
    }
    let node: Node = serde_json::from_slice(&body).map_err(|e| KubeError::Body {
        url: url.to_owned(),
        message: format!("not a Node object: {e}"),
    })?;
    if node.metadata.name != name {
        return Err(KubeError::Body {
            url: url.to_owned(),
            message: format!("asked for Node {name:?}, got {:?}", node.metadata.name),
        });
    }
    Ok(topology_of(&node.metadata.labels, &cfg.label_keys))
}

/// Reads Node `name`'s topology labels, retrying transient failures
/// within `timeout_ms`.
pub async fn node_topology(cfg: &KubernetesConfig, name: &str) -> Result<Topology, KubeError> {
    let base = api_server(cfg)?;
    let url = format!("{base}/api/v1/nodes/{}", segment(name));
    let pem = read_file(&cfg.ca_file).await?;
    let bad_ca = |message: String| KubeError::File {
        path: cfg.ca_file.clone(),
        message,
    };
    let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| bad_ca(e.to_string()))?;
    if certs.is_empty() {
        return Err(bad_ca("no PEM certificate in it".into()));
    }
    crate::install_crypto_provider();
    let client = reqwest::Client::builder()
        .tls_certs_only(certs)
        .connect_timeout(crate::timing::KUBE_CONNECT)
        .timeout(crate::timing::KUBE_REQUEST)
        .user_agent(concat!("shoal/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| KubeError::Transport {
            url: url.clone(),
            message: e.to_string(),
        })?;
    let deadline = tokio::time::Instant::now() + Duration::from_millis(cfg.timeout_ms);
    let mut wait = crate::timing::KUBE_BACKOFF;
    loop {
        let attempt = tokio::time::timeout_at(deadline, get_once(&client, &url, cfg, name));
        match attempt.await {
            Ok(Ok(t)) => return Ok(t),
            Ok(Err(e)) if e.transient() && tokio::time::Instant::now() + wait < deadline => {
                tracing::debug!("node labels: {e}; trying again");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(crate::timing::KUBE_BACKOFF_MAX);
            }
            Ok(Err(e)) => return Err(e),
            Err(_) => {
                return Err(KubeError::Transport {
                    url,
                    message: format!("no answer within {} ms", cfg.timeout_ms),
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn keys_in_order_and_cut_at_the_first_missing() {
        let keys: Vec<String> = ["r", "z", "row", "rack"].map(String::from).to_vec();
        let all = labels(&[("r", "eu"), ("z", "eu-1a"), ("row", "7"), ("rack", "b3")]);
        assert_eq!(
            topology_of(&all, &keys),
            Topology {
                labels: vec!["eu".into(), "eu-1a".into(), "7".into(), "b3".into()],
                missing: vec![]
            }
        );
        let no_row = labels(&[("r", "eu"), ("z", "eu-1a"), ("rack", "b3"), ("x", "y")]);
        let t = topology_of(&no_row, &keys);
        assert_eq!(t.labels, vec!["eu".to_string(), "eu-1a".into()]);
        assert_eq!(t.missing, vec!["row".to_string()]);
        let t = topology_of(&labels(&[("z", "")]), &keys);
        assert!(t.labels.is_empty());
        assert_eq!(t.missing.len(), 4, "an empty value counts as missing");
    }

    #[test]
    fn the_token_goes_only_over_https() {
        let cfg = KubernetesConfig {
            api_server: Some("http://10.0.0.1:6443".into()),
            ..KubernetesConfig::default()
        };
        assert!(matches!(api_server(&cfg), Err(KubeError::Insecure(_))));
    }

    #[test]
    fn names_cannot_leave_their_path_segment() {
        assert_eq!(segment("gpu-node-1.example"), "gpu-node-1.example");
        assert_eq!(segment("../x?y"), "..%2Fx%3Fy");
        assert_eq!(segment(".."), "%2E%2E");
    }
}
