//! Which URLs this agent may read: the origin allow-list and the
//! addresses no origin may live at unless the operator named them.
//!
//! A generic fetch (`/v1/object`, `shoal get`, a peer asking this node
//! to fetch a stripe it owns) may read a URL only if it matches one of
//! the `origins.allow` patterns or lies under a mirrored registry's
//! `/v2/`. Whatever matched, the connection never goes to a loopback,
//! link-local (cloud metadata), unspecified or multicast address, nor to
//! one of this node's own addresses, unless the URL's host is named
//! exactly by a pattern or a registry: a wildcard pattern or a redirect
//! cannot reach them. Names are checked after DNS resolution (see
//! `super::guard`), IP literals here, and both again on every redirect.
//! Everything in this file is pure: the decisions, not the I/O.

use reqwest::Url;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Why a URL or an address was refused: the text a client and the log
/// see (never anything but the URL's scheme, host and port).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("origin refused: {0}")]
pub struct Refused(pub String);

/// A host in a pattern: exactly this one, or any name under a domain.
#[derive(Debug, Clone, PartialEq, Eq)]
enum HostPattern {
    /// A host name or IP literal as the URL parser writes it.
    Exact(String),
    /// `*.example.com`: any name ending in `.example.com` (not the
    /// domain itself, never an IP literal).
    Under(String),
}

/// One allow-list entry: `[SCHEME://]HOST[:PORT][/PATH-PREFIX]`, where
/// HOST may start with `*.`; no scheme means http or https, no port any
/// port, no path every path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    scheme: Option<String>,
    host: HostPattern,
    port: Option<u16>,
    /// Normalised path prefix, matched on whole segments.
    path: String,
}

/// Whether an `authority` as written carries an explicit port.
fn has_port(authority: &str) -> bool {
    let after_host = match authority.rfind(']') {
        Some(i) => &authority[i + 1..],
        None => authority,
    };
    after_host
        .rsplit_once(':')
        .is_some_and(|(_, p)| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
}

/// A host without the trailing dot of a fully qualified name.
fn bare(host: &str) -> &str {
    host.strip_suffix('.').unwrap_or(host)
}

impl Pattern {
    /// Parses one entry, with a message naming it when it is malformed.
    pub fn parse(text: &str) -> Result<Pattern, String> {
        let bad = |why: &str| format!("origin pattern {text:?}: {why}");
        let (scheme, rest) = match text.split_once("://") {
            Some((s, r)) => (Some(s.to_ascii_lowercase()), r),
            None => (None, text),
        };
        if let Some(s) = &scheme
            && s != "http"
            && s != "https"
        {
            return Err(bad("the scheme must be http or https"));
        }
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        if authority.is_empty() || authority.contains('@') {
            return Err(bad("needs a host, and no user or password"));
        }
        if path.contains(['?', '#']) {
            return Err(bad("a path prefix takes no query or fragment"));
        }
        let (wild, authority) = match authority.strip_prefix("*.") {
            Some(a) => (true, a),
            None => (false, authority),
        };
        if authority.contains('*') {
            return Err(bad("`*` may only start the host, as in *.example.com"));
        }
        let url = Url::parse(&format!(
            "{}://{authority}{path}",
            scheme.as_deref().unwrap_or("http")
        ))
        .map_err(|e| bad(&e.to_string()))?;
        let host = bare(url.host_str().ok_or_else(|| bad("needs a host"))?).to_owned();
        let host = match (wild, url.host()) {
            (false, _) => HostPattern::Exact(host),
            (true, Some(url::Host::Domain(_))) => HostPattern::Under(format!(".{host}")),
            (true, _) => return Err(bad("`*.` goes before a domain name, not an address")),
        };
        let port = if has_port(authority) {
            url.port_or_known_default()
        } else {
            None
        };
        Ok(Pattern {
            scheme,
            host,
            port,
            path: url.path().to_owned(),
        })
    }

    /// The pattern that covers a mirrored registry's API: its scheme,
    /// host and port exactly, and the paths under `<base>/v2/`.
    pub fn registry(base: &str) -> Result<Pattern, String> {
        let url = Url::parse(base).map_err(|e| format!("registry URL {base:?}: {e}"))?;
        let host = url
            .host_str()
            .ok_or_else(|| format!("registry URL {base:?} has no host"))?;
        Ok(Pattern {
            scheme: Some(url.scheme().to_owned()),
            host: HostPattern::Exact(bare(host).to_owned()),
            port: url.port_or_known_default(),
            path: format!("{}/v2/", url.path().trim_end_matches('/')),
        })
    }

    /// Whether `url` matches: scheme, host, port and path prefix.
    pub fn matches(&self, url: &Url) -> bool {
        let scheme_ok = match &self.scheme {
            Some(s) => url.scheme() == s,
            None => matches!(url.scheme(), "http" | "https"),
        };
        let port_ok = self.port.is_none() || self.port == url.port_or_known_default();
        scheme_ok && port_ok && self.host_matches(url) && self.path_matches(url.path())
    }

    fn host_matches(&self, url: &Url) -> bool {
        let Some(host) = url.host_str().map(bare) else {
            return false;
        };
        match &self.host {
            HostPattern::Exact(h) => host == h,
            HostPattern::Under(suffix) => {
                matches!(url.host(), Some(url::Host::Domain(_))) && host.ends_with(suffix.as_str())
            }
        }
    }

    fn path_matches(&self, path: &str) -> bool {
        let prefix = self.path.as_str();
        match path.strip_prefix(prefix) {
            None => false,
            Some(rest) => prefix.ends_with('/') || rest.is_empty() || rest.starts_with('/'),
        }
    }

    /// The host this pattern names exactly, if it does.
    fn exact_host(&self) -> Option<&str> {
        match &self.host {
            HostPattern::Exact(h) => Some(h),
            HostPattern::Under(_) => None,
        }
    }
}

/// Why no origin may live at `ip`, or `None` if one may. IPv4 written
/// inside IPv6 (mapped, or NAT64's `64:ff9b::/96`) is judged as IPv4.
pub fn refused_address(ip: IpAddr) -> Option<&'static str> {
    match ip.to_canonical() {
        IpAddr::V4(v4) => refused_v4(v4),
        IpAddr::V6(v6) => {
            let s = v6.segments();
            if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
                let [a, b] = s[6].to_be_bytes();
                let [c, d] = s[7].to_be_bytes();
                return refused_v4(Ipv4Addr::new(a, b, c, d));
            }
            refused_v6(v6)
        }
    }
}

fn refused_v4(ip: Ipv4Addr) -> Option<&'static str> {
    if ip.is_loopback() {
        Some("a loopback address")
    } else if ip.is_link_local() {
        Some("a link-local address (where cloud metadata services live)")
    } else if ip.is_unspecified() || ip.octets()[0] == 0 {
        Some("an unspecified address")
    } else if ip.is_multicast() || ip.is_broadcast() {
        Some("a multicast or broadcast address")
    } else if ip == Ipv4Addr::new(100, 100, 100, 200) {
        Some("a cloud metadata address")
    } else {
        None
    }
}

fn refused_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let metadata: Ipv6Addr = Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254);
    if ip.is_loopback() {
        Some("a loopback address")
    } else if ip.is_unspecified() {
        Some("an unspecified address")
    } else if ip.is_multicast() {
        Some("a multicast address")
    } else if ip.segments()[0] & 0xffc0 == 0xfe80 {
        Some("a link-local address (where cloud metadata services live)")
    } else if ip == metadata {
        Some("a cloud metadata address")
    } else {
        None
    }
}

/// The agent's origin rules: the allow-list, the mirrored registries and
/// this node's own addresses.
#[derive(Debug, Clone, Default)]
pub struct OriginPolicy {
    allow: Vec<Pattern>,
    registries: Vec<Pattern>,
    own: Vec<IpAddr>,
}

impl OriginPolicy {
    /// The rules for patterns `allow`, registry base URLs `registries`,
    /// and the addresses this node listens or is reached at (`own`;
    /// unspecified ones are ignored, loopback is refused anyway).
    pub fn new(
        allow: &[String],
        registries: &[String],
        own: &[IpAddr],
    ) -> Result<OriginPolicy, String> {
        Ok(OriginPolicy {
            allow: allow
                .iter()
                .map(|p| Pattern::parse(p))
                .collect::<Result<_, _>>()?,
            registries: registries
                .iter()
                .map(|b| Pattern::registry(b))
                .collect::<Result<_, _>>()?,
            own: own
                .iter()
                .map(|ip| ip.to_canonical())
                .filter(|ip| !ip.is_unspecified())
                .collect(),
        })
    }

    /// Whether an entry lists `url`; refused if only a wildcard does
    /// while the host is named exactly elsewhere (naming a host lifts the
    /// address rules for it, so only its exact entries may reach it).
    fn listed(&self, url: &Url) -> Result<bool, Refused> {
        let entries = || self.allow.iter().chain(&self.registries);
        if !entries().any(|p| p.matches(url)) {
            return Ok(false);
        }
        let host = url.host_str().unwrap_or("");
        let exact = entries().any(|p| p.exact_host().is_some() && p.matches(url));
        if self.names_host(host) && !exact {
            return Err(Refused(format!(
                "{} is allowed only by a wildcard, and its host is named exactly elsewhere",
                origin_of(url)
            )));
        }
        Ok(true)
    }

    /// Whether the operator named `host` exactly (a pattern or a
    /// registry): its addresses are then not filtered.
    pub fn names_host(&self, host: &str) -> bool {
        let host = bare(host);
        self.allow
            .iter()
            .chain(&self.registries)
            .any(|p| p.exact_host() == Some(host))
    }

    /// Why no origin may live at `ip` for a host the operator did not
    /// name: a class of address, or this node itself.
    pub fn refused_ip(&self, ip: IpAddr) -> Option<&'static str> {
        refused_address(ip).or_else(|| {
            self.own
                .contains(&ip.to_canonical())
                .then_some("this node's own address")
        })
    }

    /// Whether a fetch may read `url`: it must match the allow-list or a
    /// registry. An IP literal that matched was named exactly, so its
    /// address is allowed; a name's addresses are checked when resolved.
    pub fn admit(&self, url: &str) -> Result<Url, Refused> {
        let parsed = Url::parse(url).map_err(|e| Refused(format!("bad URL: {e}")))?;
        if self.listed(&parsed)? {
            return Ok(parsed);
        }
        let origin = origin_of(&parsed);
        Err(Refused(if self.allow.is_empty() {
            format!(
                "{origin} is not a mirrored registry, and generic fetches are off (no origins.allow patterns)"
            )
        } else {
            format!("{origin} matches no origins.allow pattern")
        }))
    }

    /// Whether a redirect may go to `url`: anywhere listed; else an IP
    /// literal of an allowed class, or a name the operator did not name
    /// (its addresses are filtered when resolved). A name that was named
    /// exactly, on a port or path no entry lists, is refused: naming a
    /// host lifts the address rules only where the entry reaches.
    pub fn follow(&self, url: &Url) -> Result<(), Refused> {
        if !matches!(url.scheme(), "http" | "https") {
            return Err(Refused(format!("a redirect to a {} URL", url.scheme())));
        }
        if self.listed(url)? {
            return Ok(());
        }
        let origin = origin_of(url);
        match url.host() {
            Some(url::Host::Ipv4(ip)) => self.check_literal(ip.into(), &origin),
            Some(url::Host::Ipv6(ip)) => self.check_literal(ip.into(), &origin),
            Some(url::Host::Domain(d)) if self.names_host(d) => Err(Refused(format!(
                "a redirect to {origin}, a host allowed only elsewhere"
            ))),
            Some(url::Host::Domain(_)) => Ok(()),
            None => Err(Refused("a redirect to a URL without a host".into())),
        }
    }

    fn check_literal(&self, ip: IpAddr, origin: &str) -> Result<(), Refused> {
        match self.refused_ip(ip) {
            Some(why) => Err(Refused(format!("{origin} is {why}"))),
            None => Ok(()),
        }
    }
}

/// `scheme://host:port` of a URL: what an error may say about it (never
/// its path or query, which may carry a signature).
pub fn origin_of(url: &Url) -> String {
    match (url.host_str(), url.port_or_known_default()) {
        (Some(h), Some(p)) => format!("{}://{h}:{p}", url.scheme()),
        (Some(h), None) => format!("{}://{h}", url.scheme()),
        _ => format!("a {} URL", url.scheme()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    fn policy(allow: &[&str]) -> OriginPolicy {
        let allow: Vec<String> = allow.iter().map(|s| s.to_string()).collect();
        OriginPolicy::new(
            &allow,
            &["http://127.0.0.1:5000".into()],
            &["10.0.0.7".parse().unwrap()],
        )
        .unwrap()
    }

    #[test]
    fn patterns_match_scheme_host_port_and_whole_path_segments() {
        let p = Pattern::parse("https://models.example.com/weights/").unwrap();
        assert!(p.matches(&url("https://models.example.com/weights/a.bin?sig=1")));
        assert!(p.matches(&url("https://models.example.com:443/weights/a")));
        assert!(!p.matches(&url("http://models.example.com/weights/a")));
        assert!(!p.matches(&url("https://models.example.com/weightsx/a")));
        assert!(!p.matches(&url("https://models.example.com/weights/../admin")));
        assert!(!p.matches(&url("https://models.example.com/weights/%2e%2e/admin")));
        assert!(!p.matches(&url("https://evil.com/https://models.example.com/weights/")));
        let p = Pattern::parse("cdn.example.com/models").unwrap();
        assert!(p.matches(&url("http://cdn.example.com:8080/models")));
        assert!(p.matches(&url("https://CDN.example.com./models/x")));
        assert!(!p.matches(&url("https://cdn.example.com/models-old/x")));
        let p = Pattern::parse("*.s3.amazonaws.com").unwrap();
        assert!(p.matches(&url("https://bucket.s3.amazonaws.com/k")));
        assert!(!p.matches(&url("https://s3.amazonaws.com/k")));
        assert!(!p.matches(&url("https://bucket.s3.amazonaws.com.evil.io/k")));
        let p = Pattern::parse("http://127.0.0.1:8080").unwrap();
        assert!(p.matches(&url("http://127.0.0.1:8080/x")));
        assert!(!p.matches(&url("http://127.0.0.1:8081/x")));
        assert!(
            p.matches(&url("http://2130706433:8080/x")),
            "the URL parser's IPv4 forms"
        );
        let p = Pattern::parse("http://example.com:80/").unwrap();
        assert!(p.matches(&url("http://example.com/")));
        assert!(!p.matches(&url("http://example.com:81/")));
    }

    #[test]
    fn malformed_patterns_say_why() {
        for bad in [
            "ftp://x",
            "",
            "user@host",
            "*.10.0.0.1",
            "a.*.com",
            "host/p?q",
            "http://",
        ] {
            let e = Pattern::parse(bad).unwrap_err();
            assert!(e.contains("origin pattern"), "{bad}: {e}");
        }
    }

    #[test]
    fn addresses_of_the_node_and_its_metadata_are_refused() {
        for ip in [
            "127.0.0.1",
            "127.9.9.9",
            "0.0.0.0",
            "0.1.2.3",
            "169.254.169.254",
            "100.100.100.200",
            "224.0.0.1",
            "255.255.255.255",
            "::1",
            "::",
            "fe80::1",
            "fd00:ec2::254",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::a9fe:a9fe",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert!(refused_address(ip).is_some(), "{ip}");
        }
        for ip in [
            "10.1.2.3",
            "192.168.1.1",
            "8.8.8.8",
            "2001:db8::1",
            "fd00::1",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(refused_address(ip), None, "{ip}");
        }
        let p = policy(&[]);
        assert!(p.refused_ip("10.0.0.7".parse().unwrap()).is_some());
        assert!(p.refused_ip("::ffff:10.0.0.7".parse().unwrap()).is_some());
        assert!(p.refused_ip("10.0.0.8".parse().unwrap()).is_none());
    }

    #[test]
    fn only_listed_urls_are_fetched() {
        let p = policy(&[]);
        let e = p.admit("http://10.0.0.5/x").unwrap_err().to_string();
        assert!(e.contains("generic fetches are off"), "{e}");
        assert!(
            p.admit("http://127.0.0.1:5000/v2/lib/blobs/sha256:00")
                .is_ok()
        );
        assert!(p.admit("http://127.0.0.1:5000/v1/status").is_err());
        assert!(p.admit("http://127.0.0.1:5000/v2/../v1/status").is_err());
        let p = policy(&["http://10.0.0.5:8080/files/", "*.example.com"]);
        assert!(p.admit("http://10.0.0.5:8080/files/a").is_ok());
        let e = p.admit("http://10.0.0.5:8080/etc/passwd").unwrap_err();
        assert!(
            e.to_string().contains("http://10.0.0.5:8080 matches no"),
            "{e}"
        );
        assert!(!e.to_string().contains("passwd"), "the path stays out: {e}");
        assert!(p.admit("https://a.example.com/k").is_ok());
        assert!(p.admit("not a url").is_err());
    }

    #[test]
    fn redirects_cannot_reach_what_a_request_could_not() {
        let p = policy(&["http://localhost:8080/", "*.example.com"]);
        assert!(p.follow(&url("https://cdn.other.net/blob")).is_ok());
        assert!(p.follow(&url("http://127.0.0.1:7421/v1/status")).is_err());
        assert!(p.follow(&url("http://169.254.169.254/latest/")).is_err());
        assert!(p.follow(&url("http://[::ffff:a9fe:a9fe]/")).is_err());
        assert!(
            p.follow(&url("http://10.0.0.7:7420/")).is_err(),
            "this node"
        );
        assert!(p.follow(&url("http://localhost:8080/ok")).is_ok());
        assert!(p.follow(&url("http://localhost:7421/")).is_err());
        assert!(p.follow(&url("file:///etc/passwd")).is_err());
        assert!(p.names_host("localhost") && p.names_host("127.0.0.1"));
        assert!(!p.names_host("a.example.com"));
    }

    /// A host named exactly (here a registry) is exempt from the address
    /// rules, so a wildcard that also covers it must not reach it on
    /// other ports.
    #[test]
    fn a_wildcard_does_not_reach_a_host_named_exactly_elsewhere() {
        let p = OriginPolicy::new(
            &["*.corp.internal".into()],
            &["http://registry.corp.internal:5000".into()],
            &[],
        )
        .unwrap();
        assert!(p.admit("http://files.corp.internal/a").is_ok());
        assert!(
            p.admit("http://registry.corp.internal:5000/v2/x/blobs/sha256:00")
                .is_ok()
        );
        let e = p
            .admit("http://registry.corp.internal:7421/v1/status")
            .unwrap_err();
        assert!(e.to_string().contains("named exactly elsewhere"), "{e}");
        assert!(
            p.follow(&url("http://registry.corp.internal:7421/"))
                .is_err()
        );
    }
}
