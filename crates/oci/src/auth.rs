//! Registry authentication, the parts without I/O: the `WWW-Authenticate`
//! challenge a registry answers 401 with, the token endpoint's answer, and
//! credentials from a docker `config.json`.

use serde::Deserialize;
use std::collections::BTreeMap;

/// What a registry asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    /// `Basic realm=...`: send the username and password.
    Basic,
    /// `Bearer realm=...,service=...,scope=...`: get a token at `realm`.
    Bearer {
        /// The token endpoint.
        realm: String,
        /// The `service` parameter to pass on, if given.
        service: Option<String>,
        /// The `scope` parameter to pass on, if given.
        scope: Option<String>,
    },
}

/// Why a challenge or credentials file could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// The `WWW-Authenticate` header is not one this client understands.
    #[error("unsupported WWW-Authenticate challenge: {0:?}")]
    Challenge(String),
    /// The credentials file is not valid docker config JSON.
    #[error("credentials file: {0}")]
    Credentials(String),
}

/// Parses `key="value"` pairs (quoted or bare) separated by commas.
fn params(s: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut rest = s.trim();
    while !rest.is_empty() {
        let Some((key, after)) = rest.split_once('=') else {
            break;
        };
        let key = key
            .trim()
            .trim_start_matches(',')
            .trim()
            .to_ascii_lowercase();
        let after = after.trim_start();
        let (value, next) = if let Some(q) = after.strip_prefix('"') {
            // A quoted string; `\"` escapes a quote.
            let mut value = String::new();
            let mut chars = q.char_indices();
            let mut end = q.len();
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, n)) = chars.next() {
                            value.push(n);
                        }
                    }
                    '"' => {
                        end = i + 1;
                        break;
                    }
                    c => value.push(c),
                }
            }
            (value, &q[end.min(q.len())..])
        } else {
            let end = after.find(',').unwrap_or(after.len());
            (after[..end].trim().to_owned(), &after[end..])
        };
        out.insert(key, value);
        rest = next.trim_start().trim_start_matches(',').trim_start();
    }
    out
}

impl Challenge {
    /// Parses one `WWW-Authenticate` value.
    pub fn parse(header: &str) -> Result<Challenge, AuthError> {
        let bad = || AuthError::Challenge(header.to_owned());
        let h = header.trim();
        let (scheme, rest) = h.split_once(' ').unwrap_or((h, ""));
        match scheme.to_ascii_lowercase().as_str() {
            "basic" => Ok(Challenge::Basic),
            "bearer" => {
                let mut p = params(rest);
                let realm = p
                    .remove("realm")
                    .filter(|r| !r.is_empty())
                    .ok_or_else(bad)?;
                if !(realm.starts_with("https://") || realm.starts_with("http://")) {
                    return Err(bad());
                }
                Ok(Challenge::Bearer {
                    realm,
                    service: p.remove("service"),
                    scope: p.remove("scope"),
                })
            }
            _ => Err(bad()),
        }
    }
}

/// The token endpoint's JSON answer.
#[derive(Debug, Clone, Deserialize)]
pub struct TokenResponse {
    /// The token (Docker's name).
    #[serde(default)]
    pub token: Option<String>,
    /// The token (OAuth2's name).
    #[serde(default)]
    pub access_token: Option<String>,
    /// Lifetime in seconds (the spec's default is 60).
    #[serde(default)]
    pub expires_in: Option<u64>,
}

impl TokenResponse {
    /// The token, whichever field carried it.
    pub fn bearer(&self) -> Option<&str> {
        self.token
            .as_deref()
            .or(self.access_token.as_deref())
            .filter(|t| !t.is_empty())
    }

    /// Seconds the token may be used for: its lifetime, at least 60 as the
    /// spec says, less a margin of 10 s so it is not used at the edge.
    pub fn usable_secs(&self) -> u64 {
        self.expires_in.unwrap_or(60).max(60) - 10
    }
}

/// A username and password for one registry.
#[derive(Clone, PartialEq, Eq)]
pub struct Credential {
    /// User.
    pub username: String,
    /// Password or token.
    pub password: String,
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credential({}, <hidden>)", self.username)
    }
}

#[derive(Deserialize)]
struct DockerConfig {
    #[serde(default)]
    auths: BTreeMap<String, AuthEntry>,
}

#[derive(Deserialize)]
struct AuthEntry {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
}

/// The registry host a `config.json` key names: keys may be bare hosts
/// (`ghcr.io`) or URLs (`https://index.docker.io/v1/`), and Docker Hub
/// has several spellings.
pub fn normalize_host(key: &str) -> String {
    let h = key
        .trim_start_matches("https://")
        .trim_start_matches("http://");
    let h = h.split('/').next().unwrap_or(h);
    match h {
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => {
            "docker.io".into()
        }
        other => other.to_owned(),
    }
}

impl Credential {
    /// The credential of an `Authorization: Basic <base64 user:password>`
    /// header; `None` for any other scheme or a malformed value.
    pub fn from_basic(header: &str) -> Option<Credential> {
        let (scheme, b64) = header.trim().split_once(' ')?;
        if !scheme.eq_ignore_ascii_case("basic") {
            return None;
        }
        Credential::from_user_colon_password(&base64_decode(b64)?)
    }

    fn from_user_colon_password(raw: &[u8]) -> Option<Credential> {
        let text = std::str::from_utf8(raw).ok()?;
        let (u, p) = text.split_once(':')?;
        Some(Credential {
            username: u.to_owned(),
            password: p.to_owned(),
        })
    }
}

/// Credentials by registry host from a docker `config.json` text (the
/// `auths` map, with `auth` as base64 `user:password` or separate fields).
pub fn parse_docker_config(text: &str) -> Result<BTreeMap<String, Credential>, AuthError> {
    let cfg: DockerConfig =
        serde_json::from_str(text).map_err(|e| AuthError::Credentials(e.to_string()))?;
    let mut out = BTreeMap::new();
    for (key, entry) in cfg.auths {
        let cred = match (entry.auth, entry.username, entry.password) {
            (Some(b64), _, _) if !b64.is_empty() => {
                let raw = base64_decode(&b64)
                    .ok_or_else(|| AuthError::Credentials(format!("{key}: auth is not base64")))?;
                Credential::from_user_colon_password(&raw).ok_or_else(|| {
                    AuthError::Credentials(format!("{key}: auth is not UTF-8 user:password"))
                })?
            }
            (_, Some(username), Some(password)) => Credential { username, password },
            _ => continue,
        };
        out.insert(normalize_host(&key), cred);
    }
    Ok(out)
}

/// Standard base64 (with or without padding); `None` if malformed.
fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let mut acc = 0u32;
    let mut bits = 0;
    for c in s.trim().trim_end_matches('=').bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_headers_give_their_credential_and_nothing_else_does() {
        // "alice:s3:cret" in base64.
        let c = Credential::from_basic("Basic YWxpY2U6czM6Y3JldA==").unwrap();
        assert_eq!(
            (c.username.as_str(), c.password.as_str()),
            ("alice", "s3:cret")
        );
        assert!(Credential::from_basic("basic YWxpY2U6czM6Y3JldA").is_some());
        for bad in [
            "Bearer YWxpY2U6eA==",
            "Basic !!!",
            "Basic YWxpY2U=",
            "Basic",
            "",
        ] {
            assert!(Credential::from_basic(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn bearer_challenges_parse() {
        let c = Challenge::parse(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/ubuntu:pull""#,
        )
        .unwrap();
        assert_eq!(
            c,
            Challenge::Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into()),
                scope: Some("repository:library/ubuntu:pull".into()),
            }
        );
        // Scopes may hold commas inside quotes.
        let c = Challenge::parse(r#"Bearer realm="http://t/x", scope="repository:a:pull,push""#)
            .unwrap();
        assert!(
            matches!(c, Challenge::Bearer { scope: Some(s), .. } if s == "repository:a:pull,push")
        );
        assert_eq!(
            Challenge::parse(r#"Basic realm="r""#).unwrap(),
            Challenge::Basic
        );
        for bad in [
            "",
            "Bearer",
            "Bearer service=x",
            "Bearer realm=\"file:///etc\"",
            "Digest a=b",
        ] {
            assert!(Challenge::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn docker_config_credentials() {
        // "user:pa:ss" in base64.
        let text = r#"{"auths":{
            "https://index.docker.io/v1/":{"auth":"dXNlcjpwYTpzcw=="},
            "ghcr.io":{"username":"u","password":"p"},
            "empty.io":{}
        }}"#;
        let c = parse_docker_config(text).unwrap();
        assert_eq!(c["docker.io"].username, "user");
        assert_eq!(c["docker.io"].password, "pa:ss");
        assert_eq!(c["ghcr.io"].password, "p");
        assert!(!c.contains_key("empty.io"));
        assert_eq!(format!("{:?}", c["ghcr.io"]), "Credential(u, <hidden>)");
        assert!(parse_docker_config(r#"{"auths":{"x":{"auth":"!!"}}}"#).is_err());
        assert!(parse_docker_config("not json").is_err());
    }

    #[test]
    fn tokens_expire_early() {
        let t: TokenResponse =
            serde_json::from_str(r#"{"access_token":"a","expires_in":300}"#).unwrap();
        assert_eq!(t.bearer(), Some("a"));
        assert_eq!(t.usable_secs(), 290);
        let t: TokenResponse = serde_json::from_str(r#"{"token":"b"}"#).unwrap();
        assert_eq!(t.usable_secs(), 50);
        let t: TokenResponse = serde_json::from_str(r#"{"token":""}"#).unwrap();
        assert_eq!(t.bearer(), None);
    }
}
