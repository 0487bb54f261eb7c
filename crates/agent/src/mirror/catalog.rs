//! What the mirror remembers between requests, in bounded memory: tags
//! resolved at the origin (reused for a TTL, served stale while the
//! origin fails), and the size and media type of every digest seen in a
//! manifest, so a blob request needs no origin round trip first.

use hashlink::LruCache;
use shoal_oci::Digest;
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

/// Tags remembered at most.
const TAGS: usize = 4096;
/// Digests remembered at most (about 100 bytes each).
const DIGESTS: usize = 262_144;

/// A digest's size and, for manifests, media type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Known {
    /// Size in bytes.
    pub size: u64,
    /// Media type, when known.
    pub media_type: Option<String>,
}

/// A tag's resolution.
#[derive(Clone, Debug)]
pub struct Resolved {
    /// The manifest it pointed to.
    pub digest: Digest,
    /// The manifest's size and type.
    pub known: Known,
    at: Instant,
}

/// Tags and digests seen.
pub struct Catalog {
    tags: Mutex<LruCache<(String, String, String), Resolved>>,
    digests: Mutex<LruCache<Digest, Known>>,
    ttl: Duration,
    stale: Duration,
}

/// Whether a remembered tag is fresh or only usable when the origin fails.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Freshness {
    /// Within its TTL.
    Fresh,
    /// Past its TTL but within the stale-if-error window.
    Stale,
}

impl Catalog {
    /// A catalog reusing tags for `ttl`, and for `stale` more on errors.
    pub fn new(ttl: Duration, stale: Duration) -> Catalog {
        Catalog {
            tags: Mutex::new(LruCache::new(TAGS)),
            digests: Mutex::new(LruCache::new(DIGESTS)),
            ttl,
            stale,
        }
    }

    /// The remembered resolution of `registry/name:tag`, if still usable.
    pub fn tag(&self, registry: &str, name: &str, tag: &str) -> Option<(Resolved, Freshness)> {
        let key = (registry.to_owned(), name.to_owned(), tag.to_owned());
        let mut tags = self.tags.lock().unwrap_or_else(|p| p.into_inner());
        let r = tags.get(&key)?.clone();
        let age = r.at.elapsed();
        if age < self.ttl {
            Some((r, Freshness::Fresh))
        } else if age < self.ttl + self.stale {
            Some((r, Freshness::Stale))
        } else {
            tags.remove(&key);
            None
        }
    }

    /// Remembers a tag's resolution (and the manifest's size and type).
    pub fn set_tag(&self, registry: &str, name: &str, tag: &str, digest: Digest, known: Known) {
        self.learn(&digest, known.clone());
        let key = (registry.to_owned(), name.to_owned(), tag.to_owned());
        let r = Resolved {
            digest,
            known,
            at: Instant::now(),
        };
        self.tags
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key, r);
    }

    /// What is known of a digest.
    pub fn known(&self, digest: &Digest) -> Option<Known> {
        self.digests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(digest)
            .cloned()
    }

    /// Remembers a digest's size (keeping a media type learnt before).
    pub fn learn(&self, digest: &Digest, known: Known) {
        let mut d = self.digests.lock().unwrap_or_else(|p| p.into_inner());
        let media_type = known
            .media_type
            .or_else(|| d.get(digest).and_then(|k| k.media_type.clone()));
        d.insert(
            digest.clone(),
            Known {
                size: known.size,
                media_type,
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn tags_go_stale_then_expire() {
        let c = Catalog::new(Duration::from_secs(30), Duration::from_secs(60));
        let d = Digest::sha256_of(b"m");
        let k = Known {
            size: 1,
            media_type: Some("t".into()),
        };
        c.set_tag("r", "n", "v1", d.clone(), k.clone());
        assert_eq!(c.tag("r", "n", "v1").unwrap().1, Freshness::Fresh);
        assert!(c.tag("r", "n", "v2").is_none());
        tokio::time::advance(Duration::from_secs(31)).await;
        assert_eq!(c.tag("r", "n", "v1").unwrap().1, Freshness::Stale);
        tokio::time::advance(Duration::from_secs(60)).await;
        assert!(c.tag("r", "n", "v1").is_none());
        // The digest stays known, and a later size-only fact keeps the type.
        c.learn(
            &d,
            Known {
                size: 1,
                media_type: None,
            },
        );
        assert_eq!(c.known(&d), Some(k));
    }
}
