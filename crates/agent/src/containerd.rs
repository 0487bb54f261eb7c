//! The node's containerd, set up at the agent's start: `hosts.toml` for
//! each mirrored registry written into containerd's hosts directory
//! ([`certs`]), and a check that containerd reads that directory at all
//! ([`check`]), reported loudly (log, `/readyz`, a metric) when it does
//! not. Nothing here is removed at exit: a stopped agent leaves containerd
//! falling back to each registry (the mirror's port refuses the
//! connection); `shoal containerd-config --restore` puts the old files
//! back.

pub mod certs;
pub mod check;

use crate::config::containerd::ContainerdConfig;
use crate::config::mirror::MirrorConfig;
use shoal_oci::hosts::HostsFile;
use std::net::SocketAddr;
use std::time::Duration;

/// Why the hosts files could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// A registry or URL that cannot go in a `hosts.toml`.
    #[error(transparent)]
    Hosts(#[from] shoal_oci::hosts::HostsError),
    /// Writing failed.
    #[error(transparent)]
    Certs(#[from] certs::CertsError),
}

/// The mirror URL containerd is pointed at.
pub fn mirror_url(cfg: &ContainerdConfig, mirror: &MirrorConfig) -> String {
    if let Some(u) = &cfg.mirror_url {
        return u.clone();
    }
    let addr = if mirror.listen.ip().is_unspecified() {
        SocketAddr::from(([127, 0, 0, 1], mirror.listen.port()))
    } else {
        mirror.listen
    };
    format!("http://{addr}")
}

/// The `hosts.toml` of every mirrored registry.
pub fn hosts_files(
    cfg: &ContainerdConfig,
    mirror: &MirrorConfig,
) -> Result<Vec<HostsFile>, SetupError> {
    let url = mirror_url(cfg, mirror);
    mirror
        .registries
        .iter()
        .map(|r| {
            HostsFile::new(
                &r.host,
                r.url.as_deref(),
                &url,
                Duration::from_millis(cfg.dial_timeout_ms),
            )
            .map_err(SetupError::from)
        })
        .collect()
}

/// What the start-up step found, for `/readyz`, `/v1/status` and metrics.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ContainerdState {
    /// No `certs_dir` is set: the agent leaves containerd alone.
    NotManaged,
    /// Files written, and containerd reads them.
    Ready,
    /// Something keeps pulls from coming through shoal; what and why.
    Problem(String),
}

/// Writes the hosts files and checks containerd's config. Blocking file
/// work: call it off the async runtime.
pub fn setup(cfg: &ContainerdConfig, mirror: &MirrorConfig) -> ContainerdState {
    let Some(dir) = &cfg.certs_dir else {
        return ContainerdState::NotManaged;
    };
    let written = hosts_files(cfg, mirror).and_then(|files| {
        files
            .iter()
            .map(|f| Ok(certs::install(&dir.join(&f.registry), f)?))
            .collect::<Result<Vec<String>, SetupError>>()
    });
    match written {
        Ok(lines) => lines.iter().for_each(|l| tracing::info!("containerd: {l}")),
        Err(e) => {
            let msg = format!("cannot write containerd's hosts files: {e}");
            tracing::error!("{msg}");
            return ContainerdState::Problem(msg);
        }
    }
    match check::check(&cfg.config_file, dir) {
        check::Verdict::Reads => {
            tracing::info!(config = %cfg.config_file.display(), "containerd reads {}", dir.display());
            ContainerdState::Ready
        }
        check::Verdict::DoesNotRead(why) | check::Verdict::Unknown(why) => {
            tracing::error!("containerd will not pull through shoal: {why}");
            ContainerdState::Problem(why)
        }
    }
}
