//! The `[containerd]` table: where the agent writes containerd's hosts
//! files and which config it checks (the work is in `crate::containerd`).

use serde::Deserialize;
use std::path::PathBuf;

/// The `[containerd]` settings table.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ContainerdConfig {
    /// containerd's hosts directory: at start, write `hosts.toml` there for
    /// each mirrored registry (unset: write nothing). In a pod,
    /// mount the host's directory at the same path.
    pub certs_dir: Option<PathBuf>,
    /// containerd's config file, read at start to check that its registry
    /// `config_path` includes `certs_dir`.
    pub config_file: PathBuf,
    /// The mirror URL the files name (unset: `http://` + the mirror's
    /// listen address, with 127.0.0.1 for an unspecified IP).
    pub mirror_url: Option<String>,
    /// How long containerd tries to reach the mirror before it pulls from
    /// the registry itself.
    pub dial_timeout_ms: u64,
}

impl Default for ContainerdConfig {
    /// The `[containerd]` table of the defaults.
    fn default() -> Self {
        crate::AgentConfig::default().containerd
    }
}
