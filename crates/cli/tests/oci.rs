//! The OCI mirror port against a real registry (`docker-registry`, image
//! pushed with `skopeo`), checked with raw HTTP: manifests by tag and
//! digest, blobs through the mesh fetched from the registry once, HEAD and
//! Range as the distribution spec says, and clear errors for bad input.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use common::raw::{ACCEPT, request};
use common::registry::{Registry, build_image};
use common::*;
use std::time::Duration;

const MIB: usize = 1 << 20;

#[test]
fn a_pull_through_three_agents_reads_each_blob_from_the_registry_once() {
    let registry = Registry::start();
    let layout = tempfile::tempdir().unwrap();
    // Three layers, one larger than a stripe (4 MiB here).
    let image = build_image(layout.path(), "v1", &[9 * MIB, 2 * MIB, 300_000], 5);
    registry.push(layout.path(), "team/app", "v1");
    let cluster = registry.mirrors(3, "4MiB", &[]);
    let ns = registry.ns();

    // Every agent resolves the tag and serves the manifest it names.
    for a in &cluster.agents {
        let m = a.mirror_addr();
        let r = request(
            m,
            "GET",
            &format!("/v2/team/app/manifests/v1{ns}"),
            &[ACCEPT],
        );
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        assert_eq!(
            r.header("docker-content-digest"),
            Some(image.manifest.as_str())
        );
        assert_eq!(sha256(&r.body), image.manifest);
        assert_eq!(
            r.header("content-type"),
            Some("application/vnd.oci.image.manifest.v1+json")
        );
    }

    // All three read every blob at once.
    let reads: Vec<_> = cluster
        .agents
        .iter()
        .flat_map(|a| {
            image
                .blobs
                .iter()
                .map(move |b| (a.mirror_addr(), b.clone()))
        })
        .map(|(m, (digest, size))| {
            let target = format!("/v2/team/app/blobs/{digest}{ns}");
            std::thread::spawn(move || {
                let r = request(m, "GET", &target, &[]);
                assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
                assert_eq!(r.body.len() as u64, size);
                assert_eq!(sha256(&r.body), digest);
                assert_eq!(r.header("docker-content-digest"), Some(digest.as_str()));
            })
        })
        .collect();
    for t in reads {
        t.join().unwrap();
    }
    for (digest, size) in &image.blobs {
        assert_eq!(
            registry.blob_bytes(digest),
            *size,
            "blob {digest} was not read from the registry exactly once"
        );
    }

    let m = cluster.agents[1].mirror_addr();
    let (big, big_size) = image.blobs[1].clone();
    let blob = format!("/v2/team/app/blobs/{big}{ns}");
    // HEAD: the size and digest, no body.
    let r = request(m, "HEAD", &blob, &[]);
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("content-length"),
        Some(big_size.to_string().as_str())
    );
    assert_eq!(r.header("accept-ranges"), Some("bytes"));
    assert!(r.body.is_empty());
    // One range, across a stripe boundary.
    let (a, b) = (4 * MIB as u64 - 10, 4 * MIB as u64 + 9);
    let r = request(m, "GET", &blob, &[("Range", &format!("bytes={a}-{b}"))]);
    assert_eq!(r.status, 206);
    assert_eq!(
        r.header("content-range"),
        Some(format!("bytes {a}-{b}/{big_size}").as_str())
    );
    assert_eq!(r.body.len(), 20);
    let whole = request(m, "GET", &blob, &[]).body;
    assert_eq!(r.body, whole[a as usize..=b as usize]);
    // Unsatisfiable and malformed ranges.
    let r = request(m, "GET", &blob, &[("Range", &format!("bytes={big_size}-"))]);
    assert_eq!(r.status, 416);
    assert_eq!(
        r.header("content-range"),
        Some(format!("bytes */{big_size}").as_str())
    );
    let r = request(m, "GET", &blob, &[("Range", "bytes=1-2,5-6")]);
    assert_eq!(r.status, 416);
    // The manifest by digest, and HEAD by tag.
    let r = request(
        m,
        "GET",
        &format!("/v2/team/app/manifests/{}{ns}", image.manifest),
        &[ACCEPT],
    );
    assert_eq!(r.status, 200);
    assert_eq!(sha256(&r.body), image.manifest);
    let r = request(
        m,
        "HEAD",
        &format!("/v2/team/app/manifests/v1{ns}"),
        &[ACCEPT],
    );
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("docker-content-digest"),
        Some(image.manifest.as_str())
    );
    assert!(r.body.is_empty());
}

/// Where `docker-registry` keeps a blob's bytes.
fn stored_blob(registry: &Registry, digest: &str) -> std::path::PathBuf {
    let hex = &digest["sha256:".len()..];
    registry
        .dir
        .path()
        .join("data/docker/registry/v2/blobs/sha256")
        .join(&hex[..2])
        .join(hex)
        .join("data")
}

#[test]
fn a_blob_that_does_not_match_its_digest_is_cut_off_purged_and_refetched() {
    let registry = Registry::start();
    let layout = tempfile::tempdir().unwrap();
    let image = build_image(layout.path(), "v1", &[6 * MIB, 100_000], 8);
    registry.push(layout.path(), "team/bad", "v1");
    let cluster = registry.mirrors(3, "1MiB", &[]);
    let ns = registry.ns();
    let (digest, size) = image.blobs[1].clone();
    let blob = format!("/v2/team/bad/blobs/{digest}{ns}");
    let _ = request(
        cluster.agents[0].mirror_addr(),
        "GET",
        &format!("/v2/team/bad/manifests/v1{ns}"),
        &[ACCEPT],
    );

    // The registry's copy rots: same length, one byte changed mid-way.
    // Every stripe the mesh makes of it is self-consistent; only the
    // whole-blob digest can tell.
    let path = stored_blob(&registry, &digest);
    let good = std::fs::read(&path).unwrap();
    let mut bad = good.clone();
    bad[3 * MIB + 17] ^= 0xff;
    std::fs::write(&path, &bad).unwrap();

    let r = request(cluster.agents[0].mirror_addr(), "GET", &blob, &[]);
    assert_eq!(r.status, 200, "the headers went out before the end");
    assert!(
        (r.body.len() as u64) < size,
        "the response must be cut off before its last bytes, got all {} bytes",
        r.body.len()
    );
    assert_eq!(
        cluster.agents[0].metric("shoal_digest_mismatches_total"),
        1.0
    );
    // The refetch meets the same bad bytes and drops them again: in the
    // end no node holds any stripe of the blob.
    let stripes = size.div_ceil(MIB as u64);
    let keys: Vec<String> = (0..stripes)
        .map(|i| stripe_key_hex(&digest, MIB as u64, i))
        .collect();
    let clean = eventually(Duration::from_secs(60), || {
        cluster.agents[0].metric("shoal_digest_mismatches_total") >= 2.0
            && keys.iter().all(|k| cluster.holders(k).is_empty())
    });
    assert!(
        clean,
        "a node kept a stripe of the bad blob\n{}",
        cluster.problems()
    );

    // Repaired at the registry, the next read is whole and right, read
    // from the registry again rather than from a stored bad copy.
    std::fs::write(&path, &good).unwrap();
    let before = registry.blob_bytes(&digest);
    let r = request(cluster.agents[1].mirror_addr(), "GET", &blob, &[]);
    assert_eq!(r.status, 200);
    assert_eq!(sha256(&r.body), digest);
    assert_eq!(registry.blob_bytes(&digest) - before, size);
}

#[test]
fn bad_requests_get_oci_errors() {
    let registry = Registry::start();
    let reg = registry.upstream();
    let cluster = Cluster::new(1, &["--registry", &reg]);
    let m = cluster.agents[0].mirror_addr();
    let ns = registry.ns();
    let zero = "sha256:0000000000000000000000000000000000000000000000000000000000000000";
    let cases: Vec<(&str, String, u16, &str)> = vec![
        ("GET", "/v2/".into(), 200, ""),
        (
            "GET",
            format!("/v2/Bad/blobs/{zero}{ns}"),
            400,
            "NAME_INVALID",
        ),
        (
            "GET",
            format!("/v2/a/../b/blobs/{zero}{ns}"),
            400,
            "NAME_INVALID",
        ),
        (
            "GET",
            format!("/v2/a/blobs/sha256:123{ns}"),
            400,
            "DIGEST_INVALID",
        ),
        (
            "GET",
            format!("/v2/a/manifests/-bad{ns}"),
            400,
            "MANIFEST_INVALID",
        ),
        (
            "GET",
            format!("/v2/a/blobs/{zero}{ns}"),
            404,
            "BLOB_UNKNOWN",
        ),
        (
            "GET",
            format!("/v2/a/manifests/latest{ns}"),
            404,
            "MANIFEST_UNKNOWN",
        ),
        (
            "GET",
            format!("/v2/a/blobs/{zero}?ns=elsewhere.io"),
            404,
            "NAME_UNKNOWN",
        ),
        (
            "POST",
            format!("/v2/a/blobs/uploads/{ns}"),
            405,
            "UNSUPPORTED",
        ),
        ("GET", "/v2/_catalog".into(), 405, "UNSUPPORTED"),
        ("GET", format!("/v2/a/tags/list{ns}"), 405, "UNSUPPORTED"),
    ];
    for (method, target, status, code) in cases {
        let r = request(m, method, &target, &[ACCEPT]);
        assert_eq!(
            r.status,
            status,
            "{method} {target}: {}",
            String::from_utf8_lossy(&r.body)
        );
        if !code.is_empty() {
            assert_eq!(r.error_code(), code, "{method} {target}");
        }
    }
}

/// Rewrites the image manifest of the OCI layout at `dir` to exactly
/// `len` bytes (an annotation pads it) and returns its new digest.
fn pad_manifest(dir: &std::path::Path, len: usize) -> String {
    let index_path = dir.join("index.json");
    let mut index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&index_path).unwrap()).unwrap();
    let old = index["manifests"][0]["digest"].as_str().unwrap().to_owned();
    let blob = |d: &str| dir.join("blobs/sha256").join(&d["sha256:".len()..]);
    let mut manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(blob(&old)).unwrap()).unwrap();
    manifest["annotations"] = serde_json::json!({"pad": ""});
    let base = serde_json::to_vec(&manifest).unwrap().len();
    manifest["annotations"]["pad"] = "x".repeat(len - base).into();
    let bytes = serde_json::to_vec(&manifest).unwrap();
    assert_eq!(bytes.len(), len);
    let digest = sha256(&bytes);
    std::fs::write(blob(&digest), &bytes).unwrap();
    index["manifests"][0]["digest"] = digest.clone().into();
    index["manifests"][0]["size"] = len.into();
    std::fs::write(&index_path, index.to_string()).unwrap();
    digest
}

#[test]
fn a_manifest_that_ends_on_a_stripe_boundary_is_sized_from_the_mesh_while_the_registry_is_down() {
    let registry = Registry::start();
    let layout = tempfile::tempdir().unwrap();
    build_image(layout.path(), "v1", &[1000], 9);
    // Exactly one 64 KiB stripe: no shorter last stripe marks its end.
    let digest = pad_manifest(layout.path(), 64 << 10);
    registry.push(layout.path(), "team/edge", "v1");
    // The agents trust their local clients: one that checks access
    // fails closed for a repository it never asked the registry about
    // (docs/architecture.md, OCI mirror).
    let cluster = registry.mirrors(3, "64KiB", &["--trust-local-clients"]);
    let ns = registry.ns();
    let target = format!("/v2/team/edge/manifests/{digest}{ns}");
    let r = request(cluster.agents[0].mirror_addr(), "GET", &target, &[ACCEPT]);
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.body.len(), 64 << 10);
    drop(registry);
    // The others never saw it; the registry cannot size it now.
    for a in &cluster.agents[1..] {
        let r = request(a.mirror_addr(), "GET", &target, &[ACCEPT]);
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        assert_eq!(sha256(&r.body), digest);
    }
}
