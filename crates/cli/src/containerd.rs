//! `shoal containerd-config`: points containerd at the local agent's
//! mirror by writing `<certs-dir>/<registry>/hosts.toml` for each
//! registry, keeping whatever was there as `hosts.toml.shoal-backup`;
//! `--restore` puts the backups back. An agent given
//! `containerd.certs_dir` writes the same files itself at start.

use anyhow::{Result, bail};
use clap::Args;
use shoal_agent::config::mirror::RegistryConfig;
use shoal_agent::containerd::certs::{configured, install, restore};
use shoal_oci::hosts::HostsFile;
use std::path::PathBuf;
use std::time::Duration;

/// Arguments of `shoal containerd-config`.
#[derive(Args)]
pub struct ContainerdArgs {
    /// A registry to send through the mirror, HOST or HOST=URL (URL is the
    /// registry's own address, the fallback; default https://HOST, and
    /// https://registry-1.docker.io for docker.io). Repeat for each.
    #[arg(long = "registry", value_delimiter = ',')]
    registries: Vec<String>,
    /// The local agent's mirror port.
    #[arg(long, default_value = "http://127.0.0.1:7440")]
    mirror: String,
    /// containerd's hosts directory (the CRI plugin's
    /// `registry.config_path`, or `ctr --hosts-dir`).
    #[arg(long, default_value = "/etc/containerd/certs.d")]
    certs_dir: PathBuf,
    /// Milliseconds containerd waits to connect to the mirror before it
    /// goes to the registry itself.
    #[arg(long, default_value_t = 500)]
    dial_timeout_ms: u64,
    /// Put back what was there before (for the registries given, or every
    /// registry shoal configured under --certs-dir).
    #[arg(long)]
    restore: bool,
}

/// Runs the command.
pub fn run(args: ContainerdArgs) -> Result<()> {
    let registries = args
        .registries
        .iter()
        .map(|r| RegistryConfig::parse(r).map_err(anyhow::Error::msg))
        .collect::<Result<Vec<_>>>()?;
    if args.restore {
        if !args.certs_dir.is_dir() {
            bail!(
                "{} is not a directory: name the node's hosts directory (from a node debug pod it is under /host)",
                args.certs_dir.display()
            );
        }
        let hosts = if registries.is_empty() {
            configured(&args.certs_dir)?
        } else {
            registries.into_iter().map(|r| r.host).collect()
        };
        for h in hosts {
            println!("{h}: {}", restore(&args.certs_dir.join(&h))?);
        }
        return Ok(());
    }
    if registries.is_empty() {
        bail!("name at least one --registry to mirror (for example --registry docker.io)");
    }
    let files = registries
        .iter()
        .map(|r| {
            HostsFile::new(
                &r.host,
                r.url.as_deref(),
                &args.mirror,
                Duration::from_millis(args.dial_timeout_ms),
            )
        })
        .collect::<Result<Vec<_>, _>>()?;
    for f in files {
        let dir = args.certs_dir.join(&f.registry);
        println!("{}: {}", f.registry, install(&dir, &f)?);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_agent::containerd::certs::{BACKUP, FILE};
    use shoal_oci::hosts::is_ours;
    use std::fs;
    use std::path::Path;

    fn args(certs: &Path, registries: &[&str], restore: bool) -> ContainerdArgs {
        ContainerdArgs {
            registries: registries.iter().map(|s| s.to_string()).collect(),
            mirror: "http://127.0.0.1:7440".into(),
            certs_dir: certs.to_owned(),
            dial_timeout_ms: 500,
            restore,
        }
    }

    #[test]
    fn writes_backs_up_and_restores() {
        let certs = tempfile::tempdir().unwrap();
        let hub = certs.path().join("docker.io");
        fs::create_dir_all(&hub).unwrap();
        fs::write(hub.join(FILE), "server = \"https://mine\"\n").unwrap();
        fs::write(hub.join("ca.crt"), "cert").unwrap();

        run(args(certs.path(), &["docker.io", "ghcr.io"], false)).unwrap();
        let written = fs::read_to_string(hub.join(FILE)).unwrap();
        assert!(is_ours(&written));
        assert!(
            written.contains("server = \"https://mine\""),
            "the file that was there stays behind the mirror: {written}"
        );
        assert!(written.contains("[host.\"http://127.0.0.1:7440\"]"));
        assert_eq!(
            fs::read_to_string(hub.join(BACKUP)).unwrap(),
            "server = \"https://mine\"\n"
        );
        assert!(is_ours(
            &fs::read_to_string(certs.path().join("ghcr.io").join(FILE)).unwrap()
        ));

        // Running again keeps the original backup.
        run(args(certs.path(), &["docker.io"], false)).unwrap();
        assert_eq!(
            fs::read_to_string(hub.join(BACKUP)).unwrap(),
            "server = \"https://mine\"\n"
        );

        run(args(certs.path(), &[], true)).unwrap();
        assert_eq!(
            fs::read_to_string(hub.join(FILE)).unwrap(),
            "server = \"https://mine\"\n"
        );
        assert!(!hub.join(BACKUP).exists());
        assert!(hub.join("ca.crt").exists(), "other files stay");
        assert!(
            !certs.path().join("ghcr.io").exists(),
            "a directory shoal created and left empty goes"
        );
    }

    #[test]
    fn refuses_to_lose_a_file_changed_after_the_backup() {
        let certs = tempfile::tempdir().unwrap();
        let dir = certs.path().join("quay.io");
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join(FILE), "server = \"https://first\"\n").unwrap();
        run(args(certs.path(), &["quay.io"], false)).unwrap();
        fs::write(dir.join(FILE), "server = \"https://edited\"\n").unwrap();
        let e = run(args(certs.path(), &["quay.io"], false)).unwrap_err();
        assert!(e.to_string().contains("move one of them away"), "{e}");
        assert_eq!(
            fs::read_to_string(dir.join(FILE)).unwrap(),
            "server = \"https://edited\"\n"
        );
        assert_eq!(
            fs::read_to_string(dir.join(BACKUP)).unwrap(),
            "server = \"https://first\"\n"
        );
    }

    #[test]
    fn bad_names_are_refused_before_anything_is_written() {
        let certs = tempfile::tempdir().unwrap();
        assert!(run(args(certs.path(), &["docker.io", "../etc"], false)).is_err());
        assert!(run(args(certs.path(), &[], false)).is_err());
        assert_eq!(fs::read_dir(certs.path()).unwrap().count(), 0);
    }

    #[test]
    fn restoring_a_directory_that_is_not_there_is_an_error() {
        let e = run(args(Path::new("/nonexistent/certs.d"), &[], true)).unwrap_err();
        assert!(e.to_string().contains("/host"), "{e}");
    }

    #[test]
    fn a_file_that_cannot_be_merged_is_left_alone() {
        let certs = tempfile::tempdir().unwrap();
        let dir = certs.path().join("docker.io");
        fs::create_dir_all(&dir).unwrap();
        // Not valid TOML: there is no place to put the mirror in it.
        let theirs = "server = \"https://x\"\n[host.\"https://a\"\n";
        fs::write(dir.join(FILE), theirs).unwrap();
        assert!(run(args(certs.path(), &["docker.io"], false)).is_err());
        assert_eq!(fs::read_to_string(dir.join(FILE)).unwrap(), theirs);
        assert!(!dir.join(BACKUP).exists());
    }
}
