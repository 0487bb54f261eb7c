//! The registries origins may be: the allow-list, and requests to them with the
//! authentication each asks for (anonymous, Basic, or the Bearer token
//! flow with a token per repository scope, reused until it expires).
//! Redirects to blob storage on another host go without `Authorization`
//! (reqwest strips it on a cross-host redirect).

use super::OriginError;
use crate::config::mirror::RegistryConfig;
use http::{StatusCode, header};
use shoal_oci::auth::{Challenge, Credential, TokenResponse, normalize_host, parse_docker_config};
use shoal_oci::manifest::MANIFEST_ACCEPT;
use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

/// One registry on the allow-list.
#[derive(Debug, Clone)]
pub struct Upstream {
    /// Its name in image references (`docker.io`).
    pub host: String,
    /// Its API base URL, without a trailing slash.
    pub base: String,
    credential: Option<Credential>,
}

impl Upstream {
    /// The URL of `/v2/<rest>` on this registry.
    pub fn url(&self, rest: &str) -> String {
        format!("{}/v2/{rest}", self.base)
    }
}

/// Whose credentials a request to a registry carries.
#[derive(Clone, Copy, Debug)]
pub enum Identity<'a> {
    /// This agent's own (from its settings), with tokens cached and
    /// reused: the requests that fetch content.
    Node,
    /// A client's, only to ask the registry whether it accepts them; its
    /// tokens are never kept.
    Client(&'a Credential),
    /// None: what anyone may read.
    Anonymous,
}

/// What to send in `Authorization`.
#[derive(Clone)]
enum Auth {
    Basic,
    Bearer(String),
}

/// Why the mirror could not start.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// The credentials file could not be read or parsed.
    #[error("{path}: {message}")]
    Credentials {
        /// The file.
        path: String,
        /// What was wrong.
        message: String,
    },
}

/// Tokens kept at once; past it, expired ones go, then all of them.
const MAX_TOKENS: usize = 4096;

/// Authorization by (registry host, scope), with when it expires; Basic
/// is kept under an empty scope.
type AuthCache = HashMap<(String, String), (Auth, Option<Instant>)>;

/// Every mirrored registry, with the tokens obtained so far.
pub struct Registries {
    list: Vec<Upstream>,
    default: Option<usize>,
    auth: Mutex<AuthCache>,
}

impl Registries {
    /// The allow-list `registries`, with credentials from their settings
    /// or the docker `config.json` at `credentials_file`; requests that
    /// name no registry go to `default` (else the first).
    pub fn new(
        registries: &[RegistryConfig],
        default: Option<&str>,
        credentials_file: Option<&Path>,
    ) -> Result<Registries, UpstreamError> {
        let file = match credentials_file {
            None => Default::default(),
            Some(p) => {
                let err = |message: String| UpstreamError::Credentials {
                    path: p.display().to_string(),
                    message,
                };
                let text = std::fs::read_to_string(p).map_err(|e| err(e.to_string()))?;
                parse_docker_config(&text).map_err(|e| err(e.to_string()))?
            }
        };
        let list: Vec<Upstream> = registries
            .iter()
            .map(|r| Upstream {
                host: r.host.clone(),
                base: r.base_url(),
                credential: match (&r.username, &r.password) {
                    (Some(u), Some(p)) => Some(Credential {
                        username: u.clone(),
                        password: p.clone(),
                    }),
                    _ => file.get(&normalize_host(&r.host)).cloned(),
                },
            })
            .collect();
        let default = match default {
            Some(h) => list.iter().position(|u| u.host == h),
            None if list.is_empty() => None,
            None => Some(0),
        };
        Ok(Registries {
            list,
            default,
            auth: Mutex::new(HashMap::new()),
        })
    }

    /// The registry a request names with `?ns=` (or the default), if it
    /// is on the allow-list.
    pub fn select(&self, ns: Option<&str>) -> Option<&Upstream> {
        match ns {
            Some(ns) => {
                let ns = normalize_host(ns);
                self.list.iter().find(|u| normalize_host(&u.host) == ns)
            }
            None => self.default.and_then(|i| self.list.get(i)),
        }
    }

    /// Whether `url` is under a mirrored registry's `/v2/`.
    pub fn owns(&self, url: &str) -> bool {
        self.owner_of(url).is_some()
    }

    /// The registry a URL belongs to, and the repository scope its path
    /// needs (`repository:<name>:pull`).
    fn owner_of(&self, url: &str) -> Option<(&Upstream, Option<String>)> {
        let up = self
            .list
            .iter()
            .find(|u| url.starts_with(&u.base) && url[u.base.len()..].starts_with("/v2/"))?;
        let path = &url[up.base.len()..];
        let path = path.split('?').next().unwrap_or(path);
        let scope = match shoal_oci::route(path) {
            Ok(shoal_oci::Route::Blob(n, _) | shoal_oci::Route::Manifest(n, _)) => {
                Some(format!("repository:{n}:pull"))
            }
            _ => None,
        };
        Some((up, scope))
    }

    fn cached(&self, host: &str, scope: &str) -> Option<Auth> {
        let map = self.auth.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        [scope, ""].iter().find_map(|s| {
            map.get(&(host.to_owned(), (*s).to_owned()))
                .filter(|(_, until)| until.is_none_or(|u| u > now))
                .map(|(a, _)| a.clone())
        })
    }

    fn apply(
        req: reqwest::RequestBuilder,
        auth: &Auth,
        cred: Option<&Credential>,
    ) -> reqwest::RequestBuilder {
        match (auth, cred) {
            (Auth::Bearer(t), _) => req.bearer_auth(t),
            (Auth::Basic, Some(c)) => req.basic_auth(&c.username, Some(&c.password)),
            (Auth::Basic, None) => req,
        }
    }

    /// Sends the request `make` builds for `url` as this agent. For a
    /// mirrored registry it adds the manifest `Accept` list, a cached
    /// token, and on a 401 answers the challenge once and retries; other
    /// URLs go as they are.
    pub async fn send(
        &self,
        client: &reqwest::Client,
        url: &str,
        make: impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, OriginError> {
        self.send_as(client, url, Identity::Node, make).await
    }

    /// [`Registries::send`] with the credentials of `who`. The node's
    /// and anonymous tokens are cached apart; a client's request answers
    /// its challenge afresh (the caller caches its verdict).
    pub async fn send_as(
        &self,
        client: &reqwest::Client,
        url: &str,
        who: Identity<'_>,
        make: impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, OriginError> {
        let transport = crate::origin::transport;
        let Some((up, scope)) = self.owner_of(url) else {
            return make().send().await.map_err(transport);
        };
        // Tokens are kept per identity: the node's, and anyone's (an
        // anonymous token grants only what is public); never a client's.
        let (cred, kept_as) = match who {
            Identity::Node => (up.credential.as_ref(), Some(up.host.clone())),
            Identity::Anonymous => (None, Some(format!("{} (anonymous)", up.host))),
            Identity::Client(c) => (Some(c), None),
        };
        let scope = scope.unwrap_or_default();
        let build = || {
            let req = make();
            if url.contains("/manifests/") {
                req.header(header::ACCEPT, MANIFEST_ACCEPT)
            } else {
                req
            }
        };
        let mut req = build();
        if let Some(a) = kept_as.as_ref().and_then(|k| self.cached(k, &scope)) {
            req = Self::apply(req, &a, cred);
        }
        let resp = req.send().await.map_err(transport)?;
        if resp.status() != StatusCode::UNAUTHORIZED {
            return Ok(resp);
        }
        let Some(challenge) = resp
            .headers()
            .get(header::WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| Challenge::parse(v).ok())
        else {
            return Ok(resp);
        };
        let auth = match challenge {
            Challenge::Basic if cred.is_some() => {
                if let Some(k) = &kept_as {
                    self.remember(k, "", Auth::Basic, None);
                }
                Auth::Basic
            }
            Challenge::Basic => return Ok(resp),
            Challenge::Bearer {
                realm,
                service,
                scope: asked,
            } => {
                let scope_q = asked.unwrap_or_else(|| scope.clone());
                let (token, secs) =
                    Self::token(client, cred, &realm, service.as_deref(), &scope_q).await?;
                let auth = Auth::Bearer(token);
                if let Some(k) = &kept_as {
                    let until = Instant::now() + Duration::from_secs(secs);
                    self.remember(k, &scope, auth.clone(), Some(until));
                }
                auth
            }
        };
        Self::apply(build(), &auth, cred)
            .send()
            .await
            .map_err(transport)
    }

    fn remember(&self, host: &str, scope: &str, auth: Auth, until: Option<Instant>) {
        let mut map = self.auth.lock().unwrap_or_else(|p| p.into_inner());
        // Scopes name repositories a client chose: keep the map bounded.
        if map.len() >= MAX_TOKENS {
            let now = Instant::now();
            map.retain(|_, (_, until)| until.is_none_or(|u| u > now));
            if map.len() >= MAX_TOKENS {
                map.clear();
            }
        }
        map.insert((host.to_owned(), scope.to_owned()), (auth, until));
    }

    /// A token from the registry's token endpoint, asked with `cred` (or
    /// anonymously): (token, usable seconds).
    async fn token(
        client: &reqwest::Client,
        cred: Option<&Credential>,
        realm: &str,
        service: Option<&str>,
        scope: &str,
    ) -> Result<(String, u64), OriginError> {
        let mut query: Vec<(&str, &str)> = Vec::new();
        if let Some(s) = service {
            query.push(("service", s));
        }
        if !scope.is_empty() {
            query.push(("scope", scope));
        }
        let mut req = client.get(realm).query(&query);
        if let Some(c) = cred {
            req = req.basic_auth(&c.username, Some(&c.password));
        }
        let resp = req
            .send()
            .await
            .map_err(|e| match crate::origin::transport(e) {
                OriginError::Transport(m) => {
                    OriginError::Transport(format!("token endpoint {realm}: {m}"))
                }
                other => other,
            })?;
        match resp.status() {
            s if s.is_success() => {}
            // The credentials were refused (or are missing): the caller
            // sees the registry's 401.
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                return Err(OriginError::Status(StatusCode::UNAUTHORIZED.as_u16()));
            }
            // Rate limited or failing: retrying may help, and it says
            // nothing about the credentials.
            s => return Err(OriginError::Status(s.as_u16())),
        }
        let t: TokenResponse = resp
            .json()
            .await
            .map_err(|e| OriginError::Protocol(format!("token endpoint {realm}: {e}")))?;
        let token = t.bearer().ok_or_else(|| {
            OriginError::Protocol(format!("token endpoint {realm} sent no token"))
        })?;
        Ok((token.to_owned(), t.usable_secs()))
    }
}
