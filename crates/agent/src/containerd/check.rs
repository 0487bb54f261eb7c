//! Does the node's containerd read the hosts directory shoal writes?
//!
//! containerd's CRI plugin reads `hosts.toml` files only from its
//! `registry.config_path`. containerd 1.x leaves it unset, so files
//! written there change nothing; containerd 2.x defaults it to
//! `/etc/containerd/certs.d:/etc/docker/certs.d`. This reads the config
//! file (with its `imports`) and compares. Pure apart from reading files.

use std::path::{Path, PathBuf};

/// What the check found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// containerd's `config_path` includes the directory.
    Reads,
    /// It does not: pulls will not come through shoal. The text says why
    /// and what to set.
    DoesNotRead(String),
    /// The config could not be read or understood.
    Unknown(String),
}

/// The CRI plugin's registry table, by config version.
fn registry_table(version: i64) -> &'static [&'static str] {
    match version {
        3.. => &["plugins", "io.containerd.cri.v1.images", "registry"],
        2 => &["plugins", "io.containerd.grpc.v1.cri", "registry"],
        _ => &["plugins", "cri", "registry"],
    }
}

fn lookup<'a>(v: &'a toml::Value, path: &[&str]) -> Option<&'a toml::Value> {
    path.iter().try_fold(v, |v, k| v.get(k))
}

/// Files named by `imports` (a `*` in the file name is a wildcard).
fn imports(doc: &toml::Value, base: &Path) -> Vec<PathBuf> {
    let Some(list) = doc.get("imports").and_then(|v| v.as_array()) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for p in list.iter().filter_map(|v| v.as_str()) {
        let p = base.parent().unwrap_or(Path::new("/")).join(p);
        let name = p.file_name().map(|n| n.to_string_lossy().into_owned());
        match (name, p.parent()) {
            (Some(n), Some(dir)) if n.contains('*') => {
                let (pre, post) = n.split_once('*').unwrap_or((&n, ""));
                let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
                    .into_iter()
                    .flatten()
                    .filter_map(|e| e.ok())
                    .filter(|e| {
                        let f = e.file_name().to_string_lossy().into_owned();
                        f.len() >= pre.len() + post.len() && f.starts_with(pre) && f.ends_with(post)
                    })
                    .map(|e| e.path())
                    .collect();
                found.sort();
                out.extend(found);
            }
            _ => out.push(p),
        }
    }
    out
}

/// The `config_path` that a config file (and what it imports) sets, with
/// the config's version; `None` when none sets it.
fn config_path(file: &Path) -> Result<(i64, Option<String>), String> {
    let text = std::fs::read_to_string(file).map_err(|e| format!("{}: {e}", file.display()))?;
    let doc: toml::Value = toml::from_str(&text).map_err(|e| format!("{}: {e}", file.display()))?;
    let version = doc.get("version").and_then(|v| v.as_integer()).unwrap_or(1);
    let mut table = registry_table(version).to_vec();
    table.push("config_path");
    let mut found = lookup(&doc, &table)
        .and_then(|v| v.as_str())
        .map(str::to_owned);
    // Later imports override earlier settings, as containerd merges them.
    for import in imports(&doc, file) {
        if let Ok(text) = std::fs::read_to_string(&import)
            && let Ok(d) = toml::from_str::<toml::Value>(&text)
            && let Some(p) = lookup(&d, &table).and_then(|v| v.as_str())
        {
            found = Some(p.to_owned());
        }
    }
    Ok((version, found))
}

/// What to tell an operator whose containerd does not read `dir`.
fn advice(dir: &Path, version: i64) -> String {
    let table = match version {
        3.. => "plugins.\"io.containerd.cri.v1.images\".registry",
        2 => "plugins.\"io.containerd.grpc.v1.cri\".registry",
        _ => "plugins.cri.registry",
    };
    format!(
        "set config_path = \"{}\" under [{table}] in containerd's config and restart containerd",
        dir.display()
    )
}

/// Checks whether the containerd config at `config_file` makes the CRI
/// plugin read hosts files from `dir`.
pub fn check(config_file: &Path, dir: &Path) -> Verdict {
    let same = |p: &str| {
        let p = Path::new(p);
        p == dir || matches!((p.canonicalize(), dir.canonicalize()), (Ok(a), Ok(b)) if a == b)
    };
    match config_path(config_file) {
        Err(e) if !config_file.exists() => Verdict::Unknown(format!(
            "cannot read containerd's config ({e}): containerd 1.x then reads no hosts.toml at all, 2.x reads /etc/containerd/certs.d"
        )),
        Err(e) => Verdict::Unknown(format!("cannot read containerd's config: {e}")),
        Ok((version, path)) => {
            let path = match (path, version) {
                (Some(p), _) => p,
                (None, 3..) => "/etc/containerd/certs.d:/etc/docker/certs.d".to_owned(),
                (None, _) => {
                    return Verdict::DoesNotRead(format!(
                        "{} sets no registry config_path, so containerd reads no hosts.toml and pulls skip shoal; {}",
                        config_file.display(),
                        advice(dir, version)
                    ));
                }
            };
            if path.split(':').any(same) {
                Verdict::Reads
            } else {
                Verdict::DoesNotRead(format!(
                    "{} has config_path = \"{path}\", which does not include {}, so pulls skip shoal; {}",
                    config_file.display(),
                    dir.display(),
                    advice(dir, version)
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verdict(config: &str) -> Verdict {
        let d = tempfile::tempdir().unwrap();
        let file = d.path().join("config.toml");
        std::fs::write(&file, config).unwrap();
        check(&file, Path::new("/etc/containerd/certs.d"))
    }

    #[test]
    fn containerd_1x_needs_config_path() {
        let v2 = "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".registry]\n";
        match verdict(v2) {
            Verdict::DoesNotRead(why) => {
                assert!(why.contains("sets no registry config_path"), "{why}");
                assert!(
                    why.contains("[plugins.\"io.containerd.grpc.v1.cri\".registry]"),
                    "{why}"
                );
            }
            v => panic!("{v:?}"),
        }
        let set = "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".registry]\n  config_path = \"/etc/containerd/certs.d\"\n";
        assert_eq!(verdict(set), Verdict::Reads);
        let list = "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".registry]\n  config_path = \"/etc/docker/certs.d:/etc/containerd/certs.d\"\n";
        assert_eq!(verdict(list), Verdict::Reads);
        let other = "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".registry]\n  config_path = \"/srv/certs.d\"\n";
        assert!(matches!(verdict(other), Verdict::DoesNotRead(w) if w.contains("/srv/certs.d")));
        let v1 = "[plugins.cri.registry]\nconfig_path = \"/etc/containerd/certs.d\"\n";
        assert_eq!(verdict(v1), Verdict::Reads);
    }

    #[test]
    fn containerd_2x_reads_certs_d_by_default() {
        assert_eq!(verdict("version = 3\n"), Verdict::Reads);
        let other = "version = 3\n[plugins.\"io.containerd.cri.v1.images\".registry]\nconfig_path = \"/x\"\n";
        assert!(matches!(verdict(other), Verdict::DoesNotRead(_)));
    }

    #[test]
    fn imports_are_read_and_missing_or_broken_files_are_unknown() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("conf.d")).unwrap();
        std::fs::write(
            d.path().join("conf.d/10-registry.toml"),
            "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".registry]\nconfig_path = \"/etc/containerd/certs.d\"\n",
        )
        .unwrap();
        let file = d.path().join("config.toml");
        std::fs::write(&file, "version = 2\nimports = [\"conf.d/*.toml\"]\n").unwrap();
        assert_eq!(
            check(&file, Path::new("/etc/containerd/certs.d")),
            Verdict::Reads
        );
        assert!(matches!(
            check(&d.path().join("absent.toml"), Path::new("/x")),
            Verdict::Unknown(w) if w.contains("1.x then reads no hosts.toml")
        ));
        assert!(matches!(verdict("version = [\n"), Verdict::Unknown(_)));
    }
}
