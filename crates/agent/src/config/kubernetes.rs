//! The `[kubernetes]` table: whether and how the agent reads its
//! topology labels from its Node (the work is in `crate::kubernetes`).

use serde::Deserialize;
use std::path::PathBuf;

/// The `[kubernetes]` settings table.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct KubernetesConfig {
    /// Read this node's topology labels from its Node object (the Helm
    /// chart turns it on). Labels set with `labels` win.
    pub node_labels: bool,
    /// Node label keys, widest first (add the keys your site uses for rows
    /// and racks).
    pub label_keys: Vec<String>,
    /// The API server's URL (unset: `https://` +
    /// `KUBERNETES_SERVICE_HOST` : `KUBERNETES_SERVICE_PORT`).
    pub api_server: Option<String>,
    /// The service account token.
    pub token_file: PathBuf,
    /// The CA that signs the API server's certificate; the only root
    /// trusted for it.
    pub ca_file: PathBuf,
    /// How long the lookup may take in all, retries included; past it the
    /// agent starts without the labels.
    pub timeout_ms: u64,
}

impl Default for KubernetesConfig {
    /// The `[kubernetes]` table of the defaults.
    fn default() -> Self {
        crate::AgentConfig::default().kubernetes
    }
}
