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

/// What a config file (with what it imports) says about the registry.
struct Found {
    /// The config's `version` (1 when absent).
    version: i64,
    /// `registry.config_path`, if set.
    config_path: Option<String>,
    /// Whether the deprecated `registry.mirrors` table has entries.
    mirrors: bool,
    /// Imported files that could not be read or parsed.
    unreadable: Vec<String>,
}

/// Reads and parses one TOML file. The error names the file, line and
/// column but never quotes the text: a containerd config may hold
/// registry passwords, and this message reaches logs and `/readyz`.
fn parse(file: &Path) -> Result<toml::Value, String> {
    let text = std::fs::read_to_string(file).map_err(|e| format!("{}: {e}", file.display()))?;
    toml::from_str(&text).map_err(|e: toml::de::Error| {
        let line = e.span().map_or(0, |s| {
            text[..s.start.min(text.len())].lines().count().max(1)
        });
        format!("{}: not valid TOML near line {line}", file.display())
    })
}

fn read_config(file: &Path) -> Result<Found, String> {
    let doc = parse(file)?;
    let version = doc.get("version").and_then(|v| v.as_integer()).unwrap_or(1);
    let table = registry_table(version);
    let get = |d: &toml::Value, key: &str| {
        let mut path = table.to_vec();
        path.push(key);
        lookup(d, &path).cloned()
    };
    let mut found = Found {
        version,
        config_path: get(&doc, "config_path").and_then(|v| v.as_str().map(str::to_owned)),
        mirrors: get(&doc, "mirrors")
            .and_then(|v| v.as_table().map(|t| !t.is_empty()))
            .unwrap_or(false),
        unreadable: Vec::new(),
    };
    // Later imports override earlier settings, as containerd merges them.
    for import in imports(&doc, file) {
        match parse(&import) {
            Ok(d) => {
                if let Some(p) = get(&d, "config_path").and_then(|v| v.as_str().map(str::to_owned))
                {
                    found.config_path = Some(p);
                }
                if get(&d, "mirrors").is_some_and(|v| v.as_table().is_some_and(|t| !t.is_empty())) {
                    found.mirrors = true;
                }
            }
            Err(e) => found.unreadable.push(e),
        }
    }
    Ok(found)
}

/// What to tell an operator whose containerd does not read `dir`: the
/// line to set, keeping any directories already listed.
fn advice(dir: &Path, version: i64, current: Option<&str>) -> String {
    let table = match version {
        3.. => "plugins.\"io.containerd.cri.v1.images\".registry",
        2 => "plugins.\"io.containerd.grpc.v1.cri\".registry",
        _ => "plugins.cri.registry",
    };
    let value = match current.filter(|c| !c.is_empty()) {
        Some(c) => format!("{c}:{}", dir.display()),
        None => dir.display().to_string(),
    };
    format!(
        "set config_path = \"{value}\" under [{table}] in containerd's config and restart containerd"
    )
}

/// Checks whether the containerd config at `config_file` makes the CRI
/// plugin read hosts files from `dir`.
pub fn check(config_file: &Path, dir: &Path) -> Verdict {
    let same = |p: &str| {
        let p = Path::new(p);
        p == dir || matches!((p.canonicalize(), dir.canonicalize()), (Ok(a), Ok(b)) if a == b)
    };
    let found = match read_config(config_file) {
        Err(e) if !config_file.exists() => {
            return Verdict::Unknown(format!(
                "cannot read containerd's config ({e}): containerd 1.x then reads no hosts.toml at all, 2.x reads /etc/containerd/certs.d"
            ));
        }
        Err(e) => return Verdict::Unknown(format!("cannot read containerd's config: {e}")),
        Ok(f) => f,
    };
    let file = config_file.display();
    if found.version < 3 && found.mirrors && found.config_path.is_some() {
        return Verdict::DoesNotRead(format!(
            "{file} sets both registry.mirrors and registry.config_path, which containerd 1.x refuses (its CRI plugin does not load); remove every registry.mirrors entry"
        ));
    }
    let path = match (&found.config_path, found.version) {
        (Some(p), _) => p.clone(),
        (None, 3..) => "/etc/containerd/certs.d:/etc/docker/certs.d".to_owned(),
        (None, _) if !found.unreadable.is_empty() => {
            return Verdict::Unknown(format!(
                "{file} sets no registry config_path, and these imports could not be read: {}",
                found.unreadable.join("; ")
            ));
        }
        (None, version) => {
            return Verdict::DoesNotRead(format!(
                "{file} sets no registry config_path, so containerd 1.x reads no hosts.toml and pulls skip shoal (containerd 2.x reads /etc/containerd/certs.d even so); {}",
                advice(dir, version, None)
            ));
        }
    };
    if path.split(':').any(same) {
        Verdict::Reads
    } else {
        Verdict::DoesNotRead(format!(
            "{file} has config_path = \"{path}\", which does not include {}, so pulls skip shoal; {}",
            dir.display(),
            advice(dir, found.version, Some(&path))
        ))
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
        std::fs::write(d.path().join("conf.d/10-registry.toml"), "[[[").unwrap();
        let bare = d.path().join("bare.toml");
        std::fs::write(&bare, "version = 2\nimports = [\"conf.d/*.toml\"]\n").unwrap();
        assert!(matches!(
            check(&bare, Path::new("/etc/containerd/certs.d")),
            Verdict::Unknown(w) if w.contains("could not be read")
        ));
    }

    #[test]
    fn mirrors_and_config_path_together_are_refused_by_containerd_1x() {
        let both = "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".registry]\nconfig_path = \"/etc/containerd/certs.d\"\n[plugins.\"io.containerd.grpc.v1.cri\".registry.mirrors.\"docker.io\"]\nendpoint = [\"https://mirror.example\"]\n";
        assert!(
            matches!(verdict(both), Verdict::DoesNotRead(w) if w.contains("remove every registry.mirrors"))
        );
    }

    #[test]
    fn advice_keeps_the_directories_already_listed() {
        let other = "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".registry]\nconfig_path = \"/etc/docker/certs.d\"\n";
        assert!(matches!(
            verdict(other),
            Verdict::DoesNotRead(w) if w.contains("config_path = \"/etc/docker/certs.d:/etc/containerd/certs.d\"")
        ));
    }

    #[test]
    fn a_broken_config_is_not_quoted_back() {
        let secret = "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".registry.configs.\"r\".auth]\npassword = \"hunter2\" oops\n";
        match verdict(secret) {
            Verdict::Unknown(w) => {
                assert!(!w.contains("hunter2"), "{w}");
                assert!(w.contains("line 3"), "{w}");
            }
            v => panic!("{v:?}"),
        }
    }
}
