//! Real containerd pulling through shoal. Each daemon has its own root,
//! state, socket and certs.d, written by `shoal containerd-config`: the
//! node's agent first, the registry itself as the fallback. Needs root
//! (unpacking), so it skips elsewhere unless `SHOAL_REQUIRE_PRIVILEGED`.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use common::containerd::{self, Containerd};
use common::registry::{Auth, PASSWORD, Registry, USER, alice_for, build_image};
use common::*;
use std::fs;
use std::path::Path;
use std::process::Command;

const MIB: usize = 1 << 20;

/// `shoal containerd-config` for one daemon and its agent.
fn configure(c: &Containerd, registry: &str, agent: &Agent) {
    let out = Command::new(env!("CARGO_BIN_EXE_shoal"))
        .args(["containerd-config", "--registry", registry, "--mirror"])
        .arg(format!("http://{}", agent.mirror_addr()))
        .arg("--certs-dir")
        .arg(c.certs_dir())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "containerd-config: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Requests containerd sent to the registry itself (its fallback), read
/// from the registry's access log by user agent.
fn direct_requests(registry: &Registry) -> Vec<String> {
    fs::read_to_string(registry.dir.path().join("access.log"))
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("\"containerd/"))
        .map(str::to_owned)
        .collect()
}

/// Checks a finished pull: it succeeded, every layer was unpacked, and
/// the biggest layer's file has the bytes the image was built from.
fn check_pull(c: &Containerd, out: std::process::Output, layers: usize, first_layer: &[u8]) {
    assert!(
        out.status.success(),
        "ctr pull failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        fs::read_to_string(c.dir.join("containerd.log")).unwrap_or_default()
    );
    assert_eq!(c.snapshots(), layers, "every layer unpacked");
    let file = c
        .unpacked_file("data0/random.bin")
        .expect("layer 0 unpacked");
    assert_eq!(sha256(&file), sha256(first_layer));
}

fn start_containerds(root: &Path, n: usize) -> Vec<Containerd> {
    (0..n)
        .map(|i| Containerd::start(&root.join(format!("c{i}"))))
        .collect()
}

#[test]
fn three_containerds_pull_at_once_and_a_fourth_pulls_with_the_registry_down() {
    if !containerd::available() {
        return;
    }
    let registry = Registry::start();
    let layout = tempfile::tempdir().unwrap();
    let sizes = [12 * MIB, 7 * MIB, 3 * MIB, 400_000];
    let seed = 41;
    let image = build_image(layout.path(), "v1", &sizes, seed);
    registry.push(layout.path(), "team/app", "v1");
    let host = registry.host();
    let upstream = registry.upstream();
    // Four agents in one mesh, 4 MiB stripes: the 12 MiB layer spans
    // three. The fourth agent serves nobody until the registry is gone.
    // It has never asked the registry whether this repository is public,
    // so it serves it in the outage only because it trusts its local
    // clients (an agent that checks fails closed then; see
    // docs/architecture.md).
    let cluster = registry.mirrors(4, "4MiB", &["--trust-local-clients"]);
    let work = tempfile::tempdir().unwrap();
    let ctds = start_containerds(work.path(), 4);
    for (c, a) in ctds.iter().zip(&cluster.agents) {
        configure(c, &upstream, a);
        let hosts = fs::read_to_string(c.certs_dir().join(&host).join("hosts.toml")).unwrap();
        assert!(hosts.contains(&a.mirror_addr().to_string()), "{hosts}");
    }
    let first_layer = random_bytes(sizes[0], seed);

    // Three pulls at once, by tag.
    let reference = format!("{host}/team/app:v1");
    let pulls: Vec<_> = ctds[..3].iter().map(|c| c.spawn_pull(&reference)).collect();
    for (c, p) in ctds.iter().zip(pulls) {
        check_pull(c, p.wait_with_output().unwrap(), sizes.len(), &first_layer);
    }
    let direct = direct_requests(&registry);
    assert!(
        direct.is_empty(),
        "containerd fell back to the registry:\n{}",
        direct.join("\n")
    );
    for (digest, size) in &image.blobs {
        assert_eq!(
            registry.blob_bytes(digest),
            *size,
            "{digest}: the registry served its bytes exactly once in total"
        );
    }

    // The registry goes away; a fourth node pulls by digest through its
    // own agent, which has never seen this image.
    drop(registry);
    let by_digest = format!("{host}/team/app@{}", image.manifest);
    let out = ctds[3].spawn_pull(&by_digest).wait_with_output().unwrap();
    check_pull(&ctds[3], out, sizes.len(), &first_layer);
}

/// A private image through the mirror with real containerd: with the
/// pull secret's credentials containerd answers the agent's challenge
/// and pulls from the mesh without touching the registry; without them,
/// or with a wrong password, the agent refuses before any byte and
/// containerd falls back to the registry itself, which refuses too.
#[test]
fn containerd_gets_a_private_image_from_the_mesh_only_with_its_credentials() {
    if !containerd::available() {
        return;
    }
    let registry = Registry::start_with(Auth::Htpasswd {
        user: USER.into(),
        password: PASSWORD.into(),
    });
    let layout = tempfile::tempdir().unwrap();
    let sizes = [5 * MIB, 300_000];
    let seed = 42;
    let image = build_image(layout.path(), "v1", &sizes, seed);
    let secret = format!("{USER}:{PASSWORD}");
    registry.push_with_creds(layout.path(), "team/private", "v1", Some(&secret));
    let (host, upstream) = (registry.host(), registry.upstream());
    let (_creds_dir, creds) = alice_for(&host);
    let cluster = registry.mirrors(2, "4MiB", &["--registry-credentials", &creds]);
    let work = tempfile::tempdir().unwrap();
    let ctds = start_containerds(work.path(), 2);
    for (c, a) in ctds.iter().zip(&cluster.agents) {
        configure(c, &upstream, a);
    }
    let reference = format!("{host}/team/private:v1");

    let out = ctds[0].spawn_pull_as(&reference, Some(&secret));
    check_pull(
        &ctds[0],
        out.wait_with_output().unwrap(),
        sizes.len(),
        &random_bytes(sizes[0], seed),
    );
    let direct = direct_requests(&registry);
    assert!(
        direct.is_empty(),
        "containerd went to the registry:\n{}",
        direct.join("\n")
    );

    for user in [None, Some(format!("{USER}:guessed"))] {
        let seen = direct_requests(&registry).len();
        let out = ctds[1]
            .spawn_pull_as(&reference, user.as_deref())
            .wait_with_output()
            .unwrap();
        assert!(!out.status.success(), "{user:?}: pulled a private image");
        assert_eq!(ctds[1].snapshots(), 0, "{user:?}: unpacked something");
        let direct = direct_requests(&registry);
        assert!(
            direct[seen..].iter().any(|l| l.contains(" 401 ")),
            "{user:?}: containerd did not fall back to the registry: {direct:?}"
        );
    }
    for (digest, size) in &image.blobs {
        assert_eq!(
            registry.blob_bytes(digest),
            *size,
            "{digest} left the registry once"
        );
    }
}
