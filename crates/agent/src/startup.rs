//! What the agent learns and sets up on its node before it joins: its
//! topology labels (from the settings, or from its Kubernetes Node) and
//! containerd's hosts files. Problems do not stop the agent (it still
//! serves its peers) but are kept for `/readyz`, `/v1/status` and the
//! metrics, so an operator sees them.

use crate::Resolved;
use crate::containerd::{self, ContainerdState};
use crate::metrics::Metrics;

/// Where this node's topology labels came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TopologySource {
    /// The `labels` setting (or none asked for).
    Settings,
    /// The Node object; the keys it lacked are listed.
    Node {
        /// Label keys the Node does not carry.
        missing: Vec<String>,
    },
    /// The Node lookup failed; the agent runs without labels.
    Failed(String),
}

/// What the start-up steps found.
#[derive(Clone, Debug)]
pub struct HostReport {
    /// Where the labels came from.
    pub topology: TopologySource,
    /// containerd's hosts files and config.
    pub containerd: ContainerdState,
}

impl Default for HostReport {
    fn default() -> Self {
        HostReport {
            topology: TopologySource::Settings,
            containerd: ContainerdState::NotManaged,
        }
    }
}

impl HostReport {
    /// Sets the metrics of what start-up found: how many topology labels
    /// the node runs with, and (where the agent manages containerd)
    /// whether containerd reads its hosts files.
    pub fn record(&self, metrics: &mut Metrics, labels: usize) {
        metrics.topology_labels.set(labels as i64);
        let configured = match self.containerd {
            ContainerdState::NotManaged => return,
            ContainerdState::Ready => 1,
            ContainerdState::Problem(_) => 0,
        };
        metrics.containerd_configured.set(configured);
        let gauge = metrics.containerd_configured.clone();
        metrics.register(
            "containerd_configured",
            "1 when containerd reads the hosts.toml files this agent wrote, else 0",
            gauge,
        );
    }

    /// Problems an operator should fix, one sentence each.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let TopologySource::Failed(why) = &self.topology {
            out.push(format!(
                "topology labels: the Node lookup failed ({why}); running without labels"
            ));
        }
        if let ContainerdState::Problem(why) = &self.containerd {
            out.push(format!("containerd: {why}"));
        }
        out
    }
}

/// Reads the Node's labels when asked to (and `labels` is not set), then
/// writes and checks containerd's hosts files.
pub async fn prepare(cfg: &mut Resolved) -> HostReport {
    let c: &mut crate::AgentConfig = cfg;
    let topology = if c.kubernetes.node_labels && c.labels.is_empty() {
        match crate::kubernetes::node_topology(&c.kubernetes, &c.name).await {
            Ok(t) => {
                if !t.missing.is_empty() {
                    tracing::warn!(missing = ?t.missing, "the Node lacks these topology labels");
                }
                tracing::info!(labels = ?t.labels, "topology labels from Node {}", c.name);
                c.labels = t.labels;
                TopologySource::Node { missing: t.missing }
            }
            Err(e) => {
                tracing::error!("topology labels: cannot read Node {}: {e}", c.name);
                TopologySource::Failed(e.to_string())
            }
        }
    } else {
        TopologySource::Settings
    };
    let (cc, mirror) = (c.containerd.clone(), c.mirror.clone());
    let containerd = tokio::task::spawn_blocking(move || containerd::setup(&cc, &mirror))
        .await
        .unwrap_or_else(|e| ContainerdState::Problem(format!("set-up task failed: {e}")));
    HostReport {
        topology,
        containerd,
    }
}
