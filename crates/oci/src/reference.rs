//! Names, references and digests of the OCI distribution spec, and the
//! routes of its pull API, parsed strictly: anything that does not match
//! the spec's grammar is an error naming what was wrong, never a panic and
//! never a path that could leave the repository namespace.

use std::fmt;

/// Longest repository name accepted (the spec's registries commonly cap
/// the whole name at 255 characters).
pub const MAX_NAME: usize = 255;

/// Why a name, reference or digest was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RefError {
    /// The repository name breaks the grammar.
    #[error(
        "invalid repository name {0:?}: lowercase letters, digits and separators (. _ __ -) between path components joined by /"
    )]
    Name(String),
    /// The tag breaks the grammar.
    #[error("invalid tag {0:?}: up to 128 of [A-Za-z0-9_.-], not starting with . or -")]
    Tag(String),
    /// The digest is malformed.
    #[error(
        "invalid digest {0:?}: expected sha256:<64 lowercase hex> or sha512:<128 lowercase hex>"
    )]
    Digest(String),
}

/// A repository name, such as `library/ubuntu` or `team/app/worker`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Name(String);

impl Name {
    /// Parses a name: path components of `[a-z0-9]+` joined by `.`, `_`,
    /// `__` or runs of `-`, separated by `/`.
    pub fn parse(s: &str) -> Result<Name, RefError> {
        let bad = || RefError::Name(s.to_owned());
        if s.is_empty() || s.len() > MAX_NAME {
            return Err(bad());
        }
        for component in s.split('/') {
            if !valid_component(component) {
                return Err(bad());
            }
        }
        Ok(Name(s.to_owned()))
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn alnum(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit()
}

/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`
fn valid_component(c: &str) -> bool {
    let b = c.as_bytes();
    let (Some(&first), Some(&last)) = (b.first(), b.last()) else {
        return false;
    };
    if !alnum(first) || !alnum(last) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        // A separator run: ".", "_", "__" or one or more "-".
        let start = i;
        while i < b.len() && !alnum(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-');
        if !ok {
            return false;
        }
    }
    true
}

/// A content digest: algorithm and lowercase hex.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    algorithm: Algorithm,
    hex: String,
}

/// The digest algorithms this mirror verifies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Algorithm {
    /// SHA-256, 64 hex digits.
    Sha256,
    /// SHA-512, 128 hex digits.
    Sha512,
}

impl Digest {
    /// Parses `sha256:<64 hex>` or `sha512:<128 hex>`, lowercase.
    pub fn parse(s: &str) -> Result<Digest, RefError> {
        let bad = || RefError::Digest(s.to_owned());
        let (alg, hex) = s.split_once(':').ok_or_else(bad)?;
        let (algorithm, len) = match alg {
            "sha256" => (Algorithm::Sha256, 64),
            "sha512" => (Algorithm::Sha512, 128),
            _ => return Err(bad()),
        };
        let lower_hex = hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if hex.len() != len || !lower_hex {
            return Err(bad());
        }
        Ok(Digest {
            algorithm,
            hex: hex.to_owned(),
        })
    }

    /// The algorithm.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The hex part.
    pub fn hex(&self) -> &str {
        &self.hex
    }

    /// The SHA-256 digest of `bytes`.
    pub fn sha256_of(bytes: &[u8]) -> Digest {
        use sha2::Digest as _;
        Digest {
            algorithm: Algorithm::Sha256,
            hex: hex::encode(sha2::Sha256::digest(bytes)),
        }
    }

    /// Whether `bytes` hash to this digest.
    pub fn matches(&self, bytes: &[u8]) -> bool {
        use sha2::Digest as _;
        let actual = match self.algorithm {
            Algorithm::Sha256 => hex::encode(sha2::Sha256::digest(bytes)),
            Algorithm::Sha512 => hex::encode(sha2::Sha512::digest(bytes)),
        };
        actual == self.hex
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let alg = match self.algorithm {
            Algorithm::Sha256 => "sha256",
            Algorithm::Sha512 => "sha512",
        };
        write!(f, "{alg}:{}", self.hex)
    }
}

/// What a manifest request names: a tag or a digest.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Reference {
    /// A mutable tag, resolved at the origin.
    Tag(String),
    /// Immutable content.
    Digest(Digest),
}

impl Reference {
    /// A digest if the text has a `:`, else a tag.
    pub fn parse(s: &str) -> Result<Reference, RefError> {
        if s.contains(':') {
            return Digest::parse(s).map(Reference::Digest);
        }
        let b = s.as_bytes();
        let first_ok = b
            .first()
            .is_some_and(|&c| c.is_ascii_alphanumeric() || c == b'_');
        let rest_ok = b
            .iter()
            .all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'));
        if !first_ok || !rest_ok || b.len() > 128 {
            return Err(RefError::Tag(s.to_owned()));
        }
        Ok(Reference::Tag(s.to_owned()))
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reference::Tag(t) => f.write_str(t),
            Reference::Digest(d) => d.fmt(f),
        }
    }
}

/// A request path of the distribution API, classified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `/v2/`: the version check.
    Base,
    /// `/v2/<name>/manifests/<reference>`.
    Manifest(Name, Reference),
    /// `/v2/<name>/blobs/<digest>`.
    Blob(Name, Digest),
    /// A part of the API a pull-through mirror does not offer (push,
    /// catalog, tag listing, referrers), with what it was.
    Unsupported(&'static str),
}

/// Why a path is not a route.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    /// The path is not under `/v2/` or has no known shape.
    #[error("not a distribution API path: {0:?}")]
    NotFound(String),
    /// The shape is right but a part is malformed.
    #[error(transparent)]
    Bad(#[from] RefError),
}

/// Classifies a request path (percent-decoding is not applied: the
/// grammar has no character that would need it).
pub fn route(path: &str) -> Result<Route, RouteError> {
    let not_found = || RouteError::NotFound(path.to_owned());
    let rest = path.strip_prefix("/v2").ok_or_else(not_found)?;
    if rest.is_empty() || rest == "/" {
        return Ok(Route::Base);
    }
    let rest = rest.strip_prefix('/').ok_or_else(not_found)?;
    if rest == "_catalog" {
        return Ok(Route::Unsupported("catalog listing"));
    }
    if rest.ends_with("/tags/list") {
        return Ok(Route::Unsupported("tag listing"));
    }
    if rest.contains("/blobs/uploads") {
        return Ok(Route::Unsupported("push (blob upload)"));
    }
    if rest.contains("/referrers/") {
        return Ok(Route::Unsupported("the referrers API"));
    }
    // The name may hold slashes: split at the last `/manifests/` or
    // `/blobs/`, whose right side has none.
    let (name, kind, tail) = ["/manifests/", "/blobs/"]
        .iter()
        .filter_map(|k| {
            rest.rfind(k)
                .map(|i| (&rest[..i], *k, &rest[i + k.len()..]))
        })
        .max_by_key(|(n, _, _)| n.len())
        .ok_or_else(not_found)?;
    if tail.is_empty() || tail.contains('/') {
        return Err(not_found());
    }
    let name = Name::parse(name)?;
    match kind {
        "/manifests/" => Ok(Route::Manifest(name, Reference::parse(tail)?)),
        _ => Ok(Route::Blob(name, Digest::parse(tail)?)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn names_follow_the_grammar() {
        for ok in [
            "a",
            "library/ubuntu",
            "a.b_c__d---e/f0",
            "team/app/worker-1",
        ] {
            assert!(Name::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "", "A", "a/", "/a", "a//b", "a..b", "a___b", "-a", "a-", "../etc", "a/../b", "a b",
            "a%2fb",
        ] {
            assert!(Name::parse(bad).is_err(), "{bad}");
        }
        assert!(Name::parse(&"a".repeat(MAX_NAME + 1)).is_err());
    }

    #[test]
    fn digests_are_strict() {
        let d = Digest::parse(D).unwrap();
        assert_eq!(d.to_string(), D);
        assert!(d.matches(b""));
        assert!(!d.matches(b"x"));
        assert_eq!(Digest::sha256_of(b""), d);
        for bad in [
            "sha256:",
            "sha256:E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855",
            "md5:d41d8cd98f00b204e9800998ecf8427e",
            "sha256:zz",
            "e3b0c442",
            "sha256:e3b0:",
        ] {
            assert!(Digest::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn references_are_tags_or_digests() {
        assert_eq!(
            Reference::parse("v1.2_x-y").unwrap(),
            Reference::Tag("v1.2_x-y".into())
        );
        assert!(matches!(Reference::parse(D).unwrap(), Reference::Digest(_)));
        for bad in ["", ".x", "-x", "a/b", &"a".repeat(129), "sha256:nothex"] {
            assert!(Reference::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn routes_split_names_with_slashes() {
        assert_eq!(route("/v2/").unwrap(), Route::Base);
        assert_eq!(route("/v2").unwrap(), Route::Base);
        let r = route(&format!("/v2/a/b/c/blobs/{D}")).unwrap();
        assert_eq!(
            r,
            Route::Blob(Name::parse("a/b/c").unwrap(), Digest::parse(D).unwrap())
        );
        // A repository may itself be called "blobs" or "manifests".
        let r = route("/v2/x/manifests/y/manifests/latest").unwrap();
        assert_eq!(
            r,
            Route::Manifest(
                Name::parse("x/manifests/y").unwrap(),
                Reference::Tag("latest".into())
            )
        );
        assert!(matches!(
            route("/v2/_catalog").unwrap(),
            Route::Unsupported(_)
        ));
        assert!(matches!(
            route("/v2/a/tags/list").unwrap(),
            Route::Unsupported(_)
        ));
        assert!(matches!(
            route("/v2/a/blobs/uploads/").unwrap(),
            Route::Unsupported(_)
        ));
        assert!(matches!(
            route("/v2/a/blobs/uploads/123").unwrap(),
            Route::Unsupported(_)
        ));
        assert!(matches!(
            route("/v3/a/blobs/x"),
            Err(RouteError::NotFound(_))
        ));
        assert!(matches!(
            route("/v2/a/blobs/"),
            Err(RouteError::NotFound(_))
        ));
        assert!(matches!(
            route("/v2/a/blobs/sha256:12"),
            Err(RouteError::Bad(RefError::Digest(_)))
        ));
        assert!(matches!(
            route("/v2/../x/blobs/sha256:12"),
            Err(RouteError::Bad(RefError::Name(_)))
        ));
        assert!(matches!(
            route(&format!("/v2/A/blobs/{D}")),
            Err(RouteError::Bad(RefError::Name(_)))
        ));
    }
}
