//! The origin client's enforcement of [`OriginPolicy`] where reqwest
//! decides where a request goes: a DNS resolver that drops the addresses
//! no origin may live at (so a name cannot be pointed, or rebound, at the
//! node itself or a metadata service between the check and the connect),
//! and a redirect policy that checks every hop. IP literals never reach a
//! resolver; [`OriginPolicy::admit`] and [`OriginPolicy::follow`] judge
//! them.

use super::allow::{OriginPolicy, Refused};
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::redirect;
use std::net::SocketAddr;
use std::sync::Arc;

/// Redirects followed before giving up, as reqwest's default policy.
const MAX_REDIRECTS: usize = 10;

/// Resolves names with the system resolver, keeping only the addresses
/// the policy allows for that name.
pub struct GuardedResolver {
    policy: Arc<OriginPolicy>,
}

impl GuardedResolver {
    /// A resolver enforcing `policy`.
    pub fn new(policy: Arc<OriginPolicy>) -> Arc<GuardedResolver> {
        Arc::new(GuardedResolver { policy })
    }
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.policy.clone();
        let host = name.as_str().to_owned();
        Box::pin(async move {
            // `lookup_host` runs getaddrinfo on the blocking pool.
            let all: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if policy.names_host(&host) {
                return Ok(Box::new(all.into_iter()) as Addrs);
            }
            let mut refused = None;
            let kept: Vec<SocketAddr> = all
                .into_iter()
                .filter(|a| match policy.refused_ip(a.ip()) {
                    Some(why) => {
                        refused.get_or_insert((a.ip(), why));
                        false
                    }
                    None => true,
                })
                .collect();
            match (kept.is_empty(), refused) {
                (true, Some((ip, why))) => Err(Box::new(Refused(format!(
                    "{host} resolves to {ip}, {why}; name the host exactly in origins.allow to reach it"
                ))) as _),
                _ => Ok(Box::new(kept.into_iter()) as Addrs),
            }
        })
    }
}

/// Follows redirects the policy allows, up to [`MAX_REDIRECTS`].
pub fn redirect_policy(policy: Arc<OriginPolicy>) -> redirect::Policy {
    redirect::Policy::custom(move |attempt| {
        if attempt.previous().len() >= MAX_REDIRECTS {
            return attempt.error(Refused(format!("more than {MAX_REDIRECTS} redirects")));
        }
        match policy.follow(attempt.url()) {
            Ok(()) => attempt.follow(),
            Err(refused) => attempt.error(refused),
        }
    })
}

/// The policy's refusal behind a reqwest error, if that is what it is.
pub fn refusal(e: &(dyn std::error::Error + 'static)) -> Option<Refused> {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cause {
        if let Some(r) = c.downcast_ref::<Refused>() {
            return Some(r.clone());
        }
        cause = c.source();
    }
    None
}
