//! The `[kubernetes]` table: whether and how the agent reads its
//! topology labels from its Node (the work is in `crate::kubernetes`).

use serde::Deserialize;
use std::path::PathBuf;

/// The `[kubernetes]` settings table.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct KubernetesConfig {
    /// Read this node's topology labels from its Node object (default
    /// false; the Helm chart turns it on). Labels set with `labels` win.
    pub node_labels: bool,
    /// Node label keys, widest first (default
    /// `topology.kubernetes.io/region`, `topology.kubernetes.io/zone`;
    /// add the keys your site uses for rows and racks).
    pub label_keys: Vec<String>,
    /// The API server's URL (default `https://` +
    /// `KUBERNETES_SERVICE_HOST` : `KUBERNETES_SERVICE_PORT`).
    pub api_server: Option<String>,
    /// The service account token (default
    /// `/var/run/secrets/kubernetes.io/serviceaccount/token`).
    pub token_file: PathBuf,
    /// The CA that signs the API server's certificate (default
    /// `/var/run/secrets/kubernetes.io/serviceaccount/ca.crt`); the only
    /// root trusted for it.
    pub ca_file: PathBuf,
    /// How long the lookup may take in all, retries included (default
    /// 10000); past it the agent starts without the labels.
    pub timeout_ms: u64,
}

const SA: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

impl Default for KubernetesConfig {
    fn default() -> Self {
        KubernetesConfig {
            node_labels: false,
            label_keys: vec![
                "topology.kubernetes.io/region".into(),
                "topology.kubernetes.io/zone".into(),
            ],
            api_server: None,
            token_file: PathBuf::from(format!("{SA}/token")),
            ca_file: PathBuf::from(format!("{SA}/ca.crt")),
            timeout_ms: 10_000,
        }
    }
}
