//! Settings of the OCI mirror port: which registries are mirrored and how
//! the agent reaches and authenticates to each.

use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::PathBuf;

/// One mirrored registry.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RegistryConfig {
    /// The registry as image references and containerd's `?ns=` name it:
    /// `docker.io`, `ghcr.io`, `registry.example:5000`.
    pub host: String,
    /// Its API base URL (default `https://<host>`; for `docker.io`,
    /// `https://registry-1.docker.io`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Username, overriding the credentials file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// Password or token, with `username`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
}

impl RegistryConfig {
    /// A registry given as `HOST` or `HOST=URL` on the command line.
    pub fn parse(s: &str) -> Result<RegistryConfig, String> {
        let (host, url) = match s.split_once('=') {
            Some((h, u)) => (h, Some(u.to_owned())),
            None => (s, None),
        };
        if host.is_empty() || host.contains('/') {
            return Err(format!("registry {s:?}: expected HOST or HOST=URL"));
        }
        if let Some(u) = &url
            && !(u.starts_with("http://") || u.starts_with("https://"))
        {
            return Err(format!(
                "registry {s:?}: the URL must be http:// or https://"
            ));
        }
        Ok(RegistryConfig {
            host: host.to_owned(),
            url,
            username: None,
            password: None,
        })
    }

    /// The API base URL, without a trailing slash.
    pub fn base_url(&self) -> String {
        match &self.url {
            Some(u) => u.trim_end_matches('/').to_owned(),
            None if self.host == "docker.io" => "https://registry-1.docker.io".into(),
            None => format!("https://{}", self.host),
        }
    }
}

/// The `[mirror]` table.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MirrorConfig {
    /// Where the OCI pull API listens; keep it on loopback or a
    /// node-local address: it needs no token.
    pub listen: SocketAddr,
    /// The registries mirrored; requests for any other get an error at
    /// once, so containerd falls back to the registry itself.
    pub registries: Vec<RegistryConfig>,
    /// The registry for requests without `?ns=` (unset: the first).
    pub default_registry: Option<String>,
    /// How long a tag's resolution is reused.
    pub tag_ttl_ms: u64,
    /// How long past its TTL a tag's last resolution may still be served
    /// while the origin fails (0 turns it off).
    pub stale_if_error_ms: u64,
    /// A docker `config.json` with credentials per registry.
    pub credentials_file: Option<PathBuf>,
    /// Serve every local client whatever the registry would let it read
    /// (a single-tenant node). Off: content the registry does not serve
    /// anonymously goes only to clients whose credentials it accepts
    /// (see `crate::mirror::access`).
    pub trust_local_clients: bool,
    /// How long the registry's answer to "may this client read this?" is
    /// reused.
    pub access_ttl_ms: u64,
}

impl Default for MirrorConfig {
    /// The `[mirror]` table of the defaults.
    fn default() -> Self {
        crate::AgentConfig::default().mirror
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registries_from_the_command_line() {
        let r = RegistryConfig::parse("docker.io").unwrap();
        assert_eq!(r.base_url(), "https://registry-1.docker.io");
        let r = RegistryConfig::parse("127.0.0.1:5000=http://127.0.0.1:5000/").unwrap();
        assert_eq!(r.host, "127.0.0.1:5000");
        assert_eq!(r.base_url(), "http://127.0.0.1:5000");
        assert_eq!(
            RegistryConfig::parse("ghcr.io").unwrap().base_url(),
            "https://ghcr.io"
        );
        assert!(RegistryConfig::parse("a/b").is_err());
        assert!(RegistryConfig::parse("x=ftp://y").is_err());
        assert!(RegistryConfig::parse("").is_err());
    }
}
