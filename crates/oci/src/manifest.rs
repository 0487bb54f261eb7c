//! What the mirror reads from a manifest: its media type, and the digests
//! and sizes of everything it references, so that a later blob request
//! knows its size without asking the origin.

use crate::reference::Digest;
use serde::Deserialize;

/// OCI image manifest.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// Docker image manifest, schema 2.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker manifest list.
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

/// The `Accept` header sent upstream for manifests: every type this
/// mirror understands. Registries answer 404 or 400 for some manifests
/// asked for without it.
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json";

/// Largest manifest accepted (the distribution spec suggests registries
/// accept at least 4 MiB).
pub const MAX_MANIFEST: u64 = 4 << 20;

/// Whether `t` is a media type that can go in a `Content-Type` header as
/// is: `type/subtype` of RFC 6838's restricted-name characters, then
/// optional `; name=value` parameters of visible ASCII. Anything else (a
/// newline, a control character, a missing subtype) is refused rather
/// than sent on.
pub fn valid_media_type(t: &str) -> bool {
    let restricted = |s: &str| {
        !s.is_empty()
            && s.len() <= 127
            && s.starts_with(|c: char| c.is_ascii_alphanumeric())
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "!#$&^_.+-".contains(c))
    };
    let (essence, params) = t.split_once(';').unwrap_or((t, ""));
    let Some((ty, sub)) = essence.trim_end_matches(' ').split_once('/') else {
        return false;
    };
    restricted(ty)
        && restricted(sub)
        && t.len() <= 255
        && params.chars().all(|c| c == ' ' || c.is_ascii_graphic())
}

/// A content descriptor: digest and size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Descriptor {
    /// The content's digest.
    pub digest: Digest,
    /// Its size in bytes.
    pub size: u64,
}

#[derive(Deserialize)]
struct RawDescriptor {
    digest: String,
    size: u64,
}

#[derive(Deserialize)]
struct Raw {
    #[serde(rename = "mediaType", default)]
    media_type: Option<String>,
    #[serde(default)]
    config: Option<RawDescriptor>,
    #[serde(default)]
    layers: Vec<RawDescriptor>,
    #[serde(default)]
    manifests: Vec<RawDescriptor>,
}

/// A parsed manifest or index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// The media type: the document's own `mediaType`, else inferred
    /// (an index lists `manifests`, an image manifest has `layers`).
    pub media_type: String,
    /// Config, layers, or child manifests, with valid digests.
    pub references: Vec<Descriptor>,
}

/// Why a manifest could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("manifest is not valid JSON of a known kind: {0}")]
pub struct ManifestError(pub String);

impl Manifest {
    /// Parses manifest bytes.
    pub fn parse(bytes: &[u8]) -> Result<Manifest, ManifestError> {
        let raw: Raw = serde_json::from_slice(bytes).map_err(|e| ManifestError(e.to_string()))?;
        let media_type = match raw.media_type {
            Some(t) if !t.is_empty() && !valid_media_type(&t) => {
                return Err(ManifestError(format!(
                    "mediaType {t:?} is not a media type"
                )));
            }
            Some(t) if !t.is_empty() => t,
            _ if !raw.manifests.is_empty() => OCI_INDEX.to_owned(),
            _ if raw.config.is_some() => OCI_MANIFEST.to_owned(),
            _ => return Err(ManifestError("no mediaType, layers or manifests".into())),
        };
        let references = raw
            .config
            .into_iter()
            .chain(raw.layers)
            .chain(raw.manifests)
            .filter_map(|d| {
                Some(Descriptor {
                    digest: Digest::parse(&d.digest).ok()?,
                    size: d.size,
                })
            })
            .collect();
        Ok(Manifest {
            media_type,
            references,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_media_type_that_cannot_be_a_header_is_refused() {
        for good in [OCI_MANIFEST, DOCKER_LIST, "application/json; charset=utf-8"] {
            assert!(valid_media_type(good), "{good}");
        }
        for bad in [
            "",
            "application",
            "/json",
            "a/b\nX-Evil: 1",
            "a/b\r",
            "a/ b",
            "a/b;\u{7f}",
        ] {
            assert!(!valid_media_type(bad), "{bad:?}");
        }
        let text = format!(
            r#"{{"mediaType":"{}\nX-Evil: 1","config":{{"digest":"sha256:{}","size":1}}}}"#,
            OCI_MANIFEST,
            "a".repeat(64)
        );
        assert!(Manifest::parse(text.as_bytes()).is_err());
    }

    const D1: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
    const D2: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";

    #[test]
    fn image_manifests_list_config_and_layers() {
        let text = format!(
            r#"{{"schemaVersion":2,"config":{{"mediaType":"x","digest":"{D1}","size":7}},
               "layers":[{{"mediaType":"y","digest":"{D2}","size":9}},{{"digest":"bad","size":1}}]}}"#
        );
        let m = Manifest::parse(text.as_bytes()).unwrap();
        assert_eq!(m.media_type, OCI_MANIFEST);
        assert_eq!(m.references.len(), 2);
        assert_eq!(m.references[1].size, 9);
    }

    #[test]
    fn indexes_and_declared_types() {
        let text = format!(
            r#"{{"mediaType":"{DOCKER_LIST}","manifests":[{{"digest":"{D1}","size":3}}]}}"#
        );
        let m = Manifest::parse(text.as_bytes()).unwrap();
        assert_eq!(m.media_type, DOCKER_LIST);
        let text = format!(r#"{{"manifests":[{{"digest":"{D1}","size":3}}]}}"#);
        assert_eq!(
            Manifest::parse(text.as_bytes()).unwrap().media_type,
            OCI_INDEX
        );
        assert!(Manifest::parse(b"{}").is_err());
        assert!(Manifest::parse(b"\xff").is_err());
    }
}
