//! containerd's per-registry `hosts.toml` (the `certs.d` layout, read by
//! the CRI plugin through `config_path` and by `ctr --hosts-dir`): the
//! agent's mirror first, the registry itself as the fallback. Pure text;
//! the command line writes the files.

use std::time::Duration;

/// The first line of every file shoal writes, so that it can tell its
/// own files from the ones it backed up.
pub const MARKER: &str = "# Written by `shoal containerd-config`";

/// What one registry's `hosts.toml` says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostsFile {
    /// The registry as image references name it (`docker.io`,
    /// `registry.example:5000`); also the `certs.d` directory's name.
    pub registry: String,
    /// The registry's own API URL, used when the mirror fails.
    pub server: String,
    /// The agent's mirror port, tried first.
    pub mirror: String,
    /// How long containerd waits to connect to the mirror before it falls
    /// back to `server`.
    pub dial_timeout: Duration,
}

/// Why a `hosts.toml` cannot be written.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HostsError {
    /// The registry name would escape the `certs.d` directory or is not a
    /// host name.
    #[error("registry {0:?} is not a host[:port] name")]
    Registry(String),
    /// A URL that is not plain `http(s)://host[:port][/path]`.
    #[error("{0:?} is not an http:// or https:// URL")]
    Url(String),
}

/// The registry's own URL: `https://registry-1.docker.io` for Docker Hub,
/// `https://<host>` otherwise.
pub fn default_server(registry: &str) -> String {
    if registry == "docker.io" {
        "https://registry-1.docker.io".into()
    } else {
        format!("https://{registry}")
    }
}

fn check_registry(r: &str) -> Result<(), HostsError> {
    let ok = !r.is_empty()
        && r != "."
        && r != ".."
        && r.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '_' | '[' | ']'));
    if ok {
        Ok(())
    } else {
        Err(HostsError::Registry(r.to_owned()))
    }
}

fn check_url(u: &str) -> Result<(), HostsError> {
    let rest = u
        .strip_prefix("http://")
        .or_else(|| u.strip_prefix("https://"));
    let ok = rest.is_some_and(|r| {
        !r.is_empty()
            && !r.starts_with('/')
            && r.chars().all(|c| {
                c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '_' | '/' | '[' | ']')
            })
    });
    if ok {
        Ok(())
    } else {
        Err(HostsError::Url(u.to_owned()))
    }
}

impl HostsFile {
    /// Checks the names, so that the text needs no escaping and the
    /// directory stays inside `certs.d`.
    pub fn new(
        registry: &str,
        server: Option<&str>,
        mirror: &str,
        dial_timeout: Duration,
    ) -> Result<HostsFile, HostsError> {
        check_registry(registry)?;
        let server = server.map_or_else(|| default_server(registry), str::to_owned);
        check_url(&server)?;
        check_url(mirror)?;
        Ok(HostsFile {
            registry: registry.to_owned(),
            server: server.trim_end_matches('/').to_owned(),
            mirror: mirror.trim_end_matches('/').to_owned(),
            dial_timeout,
        })
    }

    /// The file's text.
    pub fn render(&self) -> String {
        format!(
            "{MARKER} for {registry}.\n\
             # The mirror is tried first; if it cannot be reached within the dial\n\
             # timeout, or answers with an error, containerd pulls from `server`.\n\
             server = \"{server}\"\n\
             \n\
             [host.\"{mirror}\"]\n  \
             capabilities = [\"pull\", \"resolve\"]\n  \
             dial_timeout = \"{ms}ms\"\n",
            registry = self.registry,
            server = self.server,
            mirror = self.mirror,
            ms = self.dial_timeout.as_millis(),
        )
    }
}

impl HostsFile {
    /// The file's text when `theirs` was there before: the mirror goes in
    /// front of it and everything it says stays (its `server`, CA and
    /// client certificates, its own hosts, tried after the mirror). With
    /// no file before, [`HostsFile::render`].
    pub fn render_over(&self, theirs: Option<&str>) -> String {
        let Some(theirs) = theirs.filter(|t| !t.trim().is_empty()) else {
            return self.render();
        };
        // Top-level keys come before the first table header in TOML.
        let lines: Vec<&str> = theirs.lines().collect();
        let first_table = lines
            .iter()
            .position(|l| l.trim_start().starts_with('['))
            .unwrap_or(lines.len());
        let (top, tables) = lines.split_at(first_table);
        let has_server = top.iter().any(|l| {
            l.trim_start()
                .strip_prefix("server")
                .is_some_and(|r| r.trim_start().starts_with('='))
        });
        let ours = format!("[host.\"{}\"]", self.mirror);
        let mut out = format!(
            "{MARKER} for {}, in front of the file that was here\n\
             # (kept as hosts.toml.shoal-backup). The mirror is tried first, then\n\
             # the file's own hosts, then `server`.\n",
            self.registry
        );
        if !has_server {
            out.push_str(&format!("server = \"{}\"\n", self.server));
        }
        for l in top {
            out.push_str(l);
            out.push('\n');
        }
        if !tables.iter().any(|l| l.trim() == ours) {
            out.push_str(&format!(
                "\n{ours}\n  capabilities = [\"pull\", \"resolve\"]\n  dial_timeout = \"{}ms\"\n\n",
                self.dial_timeout.as_millis()
            ));
        }
        for l in tables {
            out.push_str(l);
            out.push('\n');
        }
        out
    }
}

/// Whether `text` is a file shoal wrote.
pub fn is_ours(text: &str) -> bool {
    text.starts_with(MARKER)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_mirror_first_and_the_registry_as_fallback() {
        let f = HostsFile::new(
            "docker.io",
            None,
            "http://127.0.0.1:7440/",
            Duration::from_millis(500),
        )
        .unwrap();
        let text = f.render();
        assert!(is_ours(&text));
        let server = text
            .find("server = \"https://registry-1.docker.io\"")
            .unwrap();
        let host = text.find("[host.\"http://127.0.0.1:7440\"]").unwrap();
        assert!(server < host, "server is a top-level key: before any table");
        assert!(text.contains("capabilities = [\"pull\", \"resolve\"]"));
        assert!(text.contains("dial_timeout = \"500ms\""));
    }

    #[test]
    fn an_operators_file_stays_behind_the_mirror() {
        let f = HostsFile::new(
            "registry.corp:5000",
            None,
            "http://127.0.0.1:7440",
            Duration::from_millis(500),
        )
        .unwrap();
        let theirs = "server = \"https://registry.corp:5000\"\nca = \"/etc/certs/corp.pem\"\n\n[host.\"https://cache.corp\"]\n  capabilities = [\"pull\"]\n";
        let text = f.render_over(Some(theirs));
        assert!(is_ours(&text));
        assert_eq!(
            text.matches("server =").count(),
            1,
            "theirs is kept: {text}"
        );
        assert!(text.contains("ca = \"/etc/certs/corp.pem\""));
        let mirror = text.find("[host.\"http://127.0.0.1:7440\"]").unwrap();
        let cache = text.find("[host.\"https://cache.corp\"]").unwrap();
        let ca = text.find("ca = ").unwrap();
        assert!(ca < mirror && mirror < cache, "{text}");
        // A file with no server of its own gets the registry's.
        let text = f.render_over(Some("[host.\"https://cache.corp\"]\n"));
        assert!(text.contains("server = \"https://registry.corp:5000\""));
        assert_eq!(f.render_over(None), f.render());
    }

    #[test]
    fn explicit_servers_and_ports() {
        let f = HostsFile::new(
            "registry.local:5000",
            Some("http://registry.local:5000"),
            "http://10.0.0.1:7440",
            Duration::from_secs(1),
        )
        .unwrap();
        assert_eq!(f.server, "http://registry.local:5000");
        assert_eq!(
            default_server("ghcr.io"),
            "https://ghcr.io",
            "other registries are their own server"
        );
    }

    #[test]
    fn refuses_names_that_escape_or_need_quoting() {
        let m = "http://127.0.0.1:7440";
        let t = Duration::from_millis(500);
        for bad in ["", ".", "..", "../etc", "a/b", "x\"y", "a b", "reg\n"] {
            assert!(
                matches!(
                    HostsFile::new(bad, None, m, t),
                    Err(HostsError::Registry(_))
                ),
                "{bad:?}"
            );
        }
        for bad in [
            "ftp://x",
            "http://",
            "http:///x",
            "http://a\"b",
            "127.0.0.1:7440",
        ] {
            assert!(
                matches!(
                    HostsFile::new("docker.io", None, bad, t),
                    Err(HostsError::Url(_))
                ),
                "{bad:?}"
            );
            assert!(
                matches!(
                    HostsFile::new("docker.io", Some(bad), m, t),
                    Err(HostsError::Url(_))
                ),
                "{bad:?}"
            );
        }
        assert!(!is_ours("server = \"https://x\"\n"));
    }
}
