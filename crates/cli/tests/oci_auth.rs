//! The OCI mirror port against registries that want credentials: a real
//! `docker-registry` behind htpasswd (Basic) and behind token auth (Bearer
//! JWTs from a real issuer). Agents given a docker `config.json` serve the
//! manifest and every blob; agents without one answer `401 UNAUTHORIZED`;
//! and an agent fetches a token once per repository and reuses it rather
//! than asking the issuer per request. Credentials never follow a redirect
//! to blob storage on another host.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use base64::prelude::{BASE64_STANDARD, Engine as _};
use common::raw::{ACCEPT, request};
use common::registry::{Auth, Image, Registry, build_image};
use common::tokens::TokenIssuer;
use common::*;
use std::net::SocketAddr;

const MIB: usize = 1 << 20;

use common::registry::{PASSWORD, USER, alice_for};

/// Checks the registry itself answers 401 to `path` without credentials
/// and asks for the `scheme` (`Basic` or `Bearer`).
fn assert_registry_wants(registry: &Registry, path: &str, scheme: &str) {
    let r = request(registry.addr(), "GET", path, &[ACCEPT]);
    assert_eq!(r.status, 401, "the registry must want {scheme} credentials");
    assert!(
        r.header("www-authenticate")
            .is_some_and(|v| v.starts_with(&format!("{scheme} "))),
        "{:?}",
        r.header("www-authenticate")
    );
}

/// `Authorization` for `user:password`, as containerd sends a pull
/// secret to a mirror that challenged it.
fn basic(user: &str, password: &str) -> String {
    format!(
        "Basic {}",
        BASE64_STANDARD.encode(format!("{user}:{password}"))
    )
}

/// Reads `name:tag`'s manifest and every blob of `image` through the
/// mirror port `m` as the client alice: all 200 and matching their
/// digests.
fn pull_all(m: SocketAddr, ns: &str, name: &str, tag: &str, image: &Image) {
    pull_all_with(
        m,
        ns,
        name,
        tag,
        image,
        &[("Authorization", &basic(USER, PASSWORD))],
    );
}

/// [`pull_all`] with the client's headers `auth`.
fn pull_all_with(
    m: SocketAddr,
    ns: &str,
    name: &str,
    tag: &str,
    image: &Image,
    auth: &[(&str, &str)],
) {
    let r = request(
        m,
        "GET",
        &format!("/v2/{name}/manifests/{tag}{ns}"),
        &[&[ACCEPT], auth].concat(),
    );
    assert_eq!(
        r.status,
        200,
        "manifest {name}:{tag}: {}",
        String::from_utf8_lossy(&r.body)
    );
    assert_eq!(sha256(&r.body), image.manifest);
    for (digest, size) in &image.blobs {
        let r = request(m, "GET", &format!("/v2/{name}/blobs/{digest}{ns}"), auth);
        assert_eq!(
            r.status,
            200,
            "blob {digest}: {}",
            String::from_utf8_lossy(&r.body)
        );
        assert_eq!(r.body.len() as u64, *size);
        assert_eq!(sha256(&r.body), *digest);
    }
}

/// Asks the mirror port `m` for `name:tag`'s manifest and a blob of
/// `image`: both refused with 401 `UNAUTHORIZED`.
fn assert_refused(m: SocketAddr, ns: &str, name: &str, tag: &str, image: &Image) {
    let r = request(
        m,
        "GET",
        &format!("/v2/{name}/manifests/{tag}{ns}"),
        &[ACCEPT],
    );
    assert_eq!(
        r.status,
        401,
        "manifest {name}:{tag} without credentials: {}",
        String::from_utf8_lossy(&r.body)
    );
    assert_eq!(r.error_code(), "UNAUTHORIZED");
    let (digest, _) = &image.blobs[1];
    let r = request(m, "GET", &format!("/v2/{name}/blobs/{digest}{ns}"), &[]);
    assert_eq!(
        r.status,
        401,
        "blob {digest} without credentials: {}",
        String::from_utf8_lossy(&r.body)
    );
    assert_eq!(r.error_code(), "UNAUTHORIZED");
}

/// Registry answers (successful ones) to requests for repository `name`
/// after the first `from` lines of its access log.
fn served_since(registry: &Registry, from: usize, name: &str) -> usize {
    let prefix = format!("/v2/{name}/");
    registry
        .log()
        .iter()
        .skip(from)
        .filter(|(_, target, status, _)| target.starts_with(&prefix) && *status < 300)
        .count()
}

#[test]
fn an_htpasswd_registry_is_mirrored_with_credentials_and_refused_without() {
    let registry = Registry::start_with(Auth::Htpasswd {
        user: USER.into(),
        password: PASSWORD.into(),
    });
    let layout = tempfile::tempdir().unwrap();
    let image = build_image(layout.path(), "v1", &[3 * MIB, 200_000], 31);
    registry.push_with_creds(
        layout.path(),
        "team/private",
        "v1",
        Some(&format!("{USER}:{PASSWORD}")),
    );
    // The registry itself refuses a client without credentials.
    assert_registry_wants(&registry, "/v2/team/private/manifests/v1", "Basic");

    let host = registry.host();
    let reg = registry.upstream();
    let (_creds_dir, creds) = alice_for(&host);
    let ns = registry.ns();
    let cluster = registry.mirrors(2, "1MiB", &["--registry-credentials", &creds]);
    pull_all(
        cluster.agents[0].mirror_addr(),
        &ns,
        "team/private",
        "v1",
        &image,
    );

    // An agent of another cluster, without credentials: the registry's
    // 401 reaches the client as the OCI error.
    let anonymous = Cluster::new(1, &["--registry", &reg]);
    assert_refused(
        anonymous.agents[0].mirror_addr(),
        &ns,
        "team/private",
        "v1",
        &image,
    );
}

/// A real token issuer for the test user, and docker-registry behind
/// token auth from it.
fn token_registry() -> (TokenIssuer, Registry) {
    let issuer = TokenIssuer::start(USER, PASSWORD);
    let registry = Registry::start_with(Auth::Token {
        realm: issuer.realm(),
        service: tokens::SERVICE.into(),
        issuer: tokens::ISSUER.into(),
        bundle: issuer.bundle(),
    });
    (issuer, registry)
}

#[test]
fn a_token_registry_is_mirrored_with_one_token_per_agent_not_per_request() {
    let (issuer, registry) = token_registry();
    let name = "team/sealed";
    let creds_arg = format!("{USER}:{PASSWORD}");
    let layout = tempfile::tempdir().unwrap();
    let image = build_image(layout.path(), "v1", &[3 * MIB, 200_000], 32);
    registry.push_with_creds(layout.path(), name, "v1", Some(&creds_arg));
    assert!(
        issuer.issued() >= 1,
        "skopeo pushed without a token?\n{}",
        registry.app_log()
    );
    assert_registry_wants(&registry, &format!("/v2/{name}/manifests/v1"), "Bearer");

    let host = registry.host();
    let reg = registry.upstream();
    let (_creds_dir, creds) = alice_for(&host);
    let ns = registry.ns();
    // Local clients are trusted here: this is about the agents' own
    // tokens, not the clients' (see the test of private content).
    let cluster = registry.mirrors(
        2,
        "1MiB",
        &["--registry-credentials", &creds, "--trust-local-clients"],
    );
    let agents = cluster.agents.len();
    let before_pull = issuer.issued();
    let scopes_before = issuer.scopes().len();
    pull_all_with(
        cluster.agents[0].mirror_addr(),
        &ns,
        name,
        "v1",
        &image,
        &[],
    );
    assert!(
        issuer.issued() > before_pull,
        "the agents read the registry without tokens?\n{}",
        registry.app_log()
    );
    // The agents asked for exactly what a pull of this repository needs.
    let wanted = format!("repository:{name}:pull");
    let asked = issuer.scopes();
    assert!(
        asked[scopes_before..].iter().all(|s| *s == wanted),
        "scopes asked for: {:?}",
        &asked[scopes_before..]
    );

    // Reuse. Each agent keeps its token per (registry, repository scope)
    // until shortly before it expires (300 s), so from here on an agent
    // asks the issuer at most once if it never has (the first reads may
    // all have gone through the other agent), plus once more if a slow
    // run outlived its token: at most 2 per agent, however many requests
    // reach the registry.
    let bound = 2 * agents;

    // Every blob again through the other agent. It has not served this
    // manifest, so it learns each blob's size with a HEAD at the
    // registry; the bytes come from the mesh.
    let before = issuer.issued();
    let mark = registry.log().len();
    for (digest, size) in &image.blobs {
        let r = request(
            cluster.agents[1].mirror_addr(),
            "GET",
            &format!("/v2/{name}/blobs/{digest}{ns}"),
            &[],
        );
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        assert_eq!(r.body.len() as u64, *size);
        assert_eq!(sha256(&r.body), *digest);
    }
    let grown = issuer.issued() - before;
    assert!(
        grown <= bound,
        "{grown} new tokens for {} registry requests: not reused",
        served_since(&registry, mark, name)
    );

    // A second image in the same repository: new blobs, so every read
    // reaches the registry, and all of it under the same scope. Each
    // agent resolves the tag first, one after the other, so that no
    // agent races itself for its first token.
    let layout2 = tempfile::tempdir().unwrap();
    let image2 = build_image(layout2.path(), "v2", &[3 * MIB, 200_000], 33);
    registry.push_with_creds(layout2.path(), name, "v2", Some(&creds_arg));
    let before = issuer.issued();
    let mark = registry.log().len();
    for a in &cluster.agents {
        let r = request(
            a.mirror_addr(),
            "HEAD",
            &format!("/v2/{name}/manifests/v2{ns}"),
            &[ACCEPT],
        );
        assert_eq!(r.status, 200, "{}: HEAD {name}:v2", a.name);
    }
    for a in &cluster.agents {
        pull_all_with(a.mirror_addr(), &ns, name, "v2", &image2, &[]);
    }
    let grown = issuer.issued() - before;
    let served = served_since(&registry, mark, name);
    assert!(
        served > image2.blobs.len(),
        "only {served} registry requests for a new image of {} blobs",
        image2.blobs.len()
    );
    assert!(
        grown <= bound,
        "{grown} new tokens for {served} registry requests: not reused"
    );

    // Without credentials the issuer refuses the agent, and the client
    // sees the registry's 401 as the OCI error; no token is issued.
    let before = issuer.issued();
    let anonymous = Cluster::new(1, &["--registry", &reg, "--trust-local-clients"]);
    assert_refused(anonymous.agents[0].mirror_addr(), &ns, name, "v1", &image);
    assert_eq!(issuer.issued(), before);
}

/// Once the mesh holds a private image, a client the registry would
/// refuse gets nothing of it through any agent: without credentials a
/// 401 with a Basic challenge (so containerd sends the pull secret, or
/// goes to the registry), with wrong ones a 403; with the right ones it
/// is served from the mesh. The client's password reaches no log.
#[test]
fn private_content_goes_only_to_clients_the_registry_accepts() {
    let registry = Registry::start_with(Auth::Htpasswd {
        user: USER.into(),
        password: PASSWORD.into(),
    });
    private_content_checks(&registry);
}

/// The same against token auth with two repositories: `public/app`,
/// which the issuer grants to anyone, goes to a client without
/// credentials from the mesh; `team/private` only as above.
#[test]
fn a_token_registry_serves_public_content_to_anyone_and_private_only_to_its_users() {
    let (_issuer, registry) = token_registry(); // the issuer lives to the end
    let layout = tempfile::tempdir().unwrap();
    let public = build_image(layout.path(), "v1", &[2 * MIB, 1000], 38);
    let creds = format!("{USER}:{PASSWORD}");
    registry.push_with_creds(layout.path(), "public/app", "v1", Some(&creds));
    let (_creds_dir, file) = alice_for(&registry.host());
    let ns = registry.ns();
    let cluster = registry.mirrors(2, "1MiB", &["--registry-credentials", &file]);
    for a in &cluster.agents {
        pull_all_with(a.mirror_addr(), &ns, "public/app", "v1", &public, &[]);
    }
    for (digest, size) in &public.blobs {
        assert_eq!(
            registry.blob_bytes(digest),
            *size,
            "{digest} left the registry once"
        );
    }
    private_content_checks(&registry);
}

/// Pushes a private image, pulls it through one agent as the user, then
/// checks another agent (whose mesh holds it) refuses it without
/// credentials (401 with a Basic challenge) and with wrong ones (403),
/// serves it with the right ones from the mesh, counts each, and logs
/// no password.
fn private_content_checks(registry: &Registry) {
    let layout = tempfile::tempdir().unwrap();
    let image = build_image(layout.path(), "v1", &[3 * MIB, 200_000], 35);
    let name = "team/private";
    registry.push_with_creds(
        layout.path(),
        name,
        "v1",
        Some(&format!("{USER}:{PASSWORD}")),
    );
    let (_creds_dir, creds) = alice_for(&registry.host());
    let ns = registry.ns();
    let cluster = registry.mirrors(2, "1MiB", &["--registry-credentials", &creds]);
    pull_all(cluster.agents[0].mirror_addr(), &ns, name, "v1", &image);

    let m = cluster.agents[1].mirror_addr();
    let mut paths = vec![
        format!("/v2/{name}/manifests/v1{ns}"),
        format!("/v2/{name}/manifests/{}{ns}", image.manifest),
    ];
    paths.extend(
        image
            .blobs
            .iter()
            .map(|(d, _)| format!("/v2/{name}/blobs/{d}{ns}")),
    );
    let wrong = basic(USER, "guessed");
    for path in &paths {
        let r = request(m, "GET", path, &[ACCEPT]);
        assert_eq!(r.status, 401, "{path} without credentials");
        assert_eq!(r.error_code(), "UNAUTHORIZED");
        assert!(
            r.header("www-authenticate")
                .is_some_and(|v| v.starts_with("Basic ")),
            "{path}: a 401 must challenge for Basic: {:?}",
            r.header("www-authenticate")
        );
        let r = request(m, "GET", path, &[ACCEPT, ("Authorization", &wrong)]);
        assert_eq!(r.status, 403, "{path} with a wrong password");
        assert_eq!(r.error_code(), "DENIED");
    }
    // The local API takes no credentials: a private registry URL there
    // is refused too, though the agent holds the bytes and credentials.
    let (blob, _) = &image.blobs[0];
    let url = format!("http://{}/v2/{name}/blobs/{blob}", registry.host());
    let enc = url.replace(':', "%3A").replace('/', "%2F");
    let (code, body) = http_get(
        cluster.agents[1].api_addr(),
        &format!("/v1/object?url={enc}"),
    )
    .unwrap();
    assert_eq!(code, 403, "{body}");
    pull_all(m, &ns, name, "v1", &image);
    for (digest, size) in &image.blobs {
        assert_eq!(
            registry.blob_bytes(digest),
            *size,
            "{digest}: the second agent served it from the mesh"
        );
    }
    let a = &cluster.agents[1];
    let count = |result: &str| {
        let body = http_get(a.api_addr(), "/metrics").unwrap().1;
        let want = format!("shoal_mirror_access_total{{result=\"{result}\"}} ");
        body.lines()
            .find_map(|l| l.strip_prefix(&want)?.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    assert_eq!(count("Challenged"), paths.len() as f64);
    assert_eq!(count("Denied"), paths.len() as f64);
    // pull_all reads the manifest by tag and every blob.
    assert_eq!(count("Granted"), 1.0 + image.blobs.len() as f64);
    for agent in &cluster.agents {
        let log = agent.log();
        assert!(
            !log.contains("guessed") && !log.contains(&wrong[6..]),
            "{}",
            agent.name
        );
    }
}

/// A blob is served under a repository only if the registry holds it
/// there: a reader of one repository cannot name another's layer by its
/// digest and have the mesh hand it over.
#[test]
fn a_digest_is_served_only_under_a_repository_that_holds_it() {
    let registry = Registry::start();
    let (la, lb) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = build_image(la.path(), "v1", &[MIB, 1000], 36);
    let b = build_image(lb.path(), "v1", &[2 * MIB, 2000], 37);
    registry.push(la.path(), "team/a", "v1");
    registry.push(lb.path(), "team/b", "v1");
    let ns = registry.ns();
    let cluster = registry.mirrors(1, "1MiB", &[]);
    let m = cluster.agents[0].mirror_addr();
    pull_all_with(m, &ns, "team/a", "v1", &a, &[]);
    pull_all_with(m, &ns, "team/b", "v1", &b, &[]);
    for (digest, _) in &b.blobs {
        let r = request(m, "GET", &format!("/v2/team/a/blobs/{digest}{ns}"), &[]);
        assert_eq!(r.status, 404, "team/b's {digest} under team/a");
    }
}

#[test]
fn credentials_are_not_forwarded_when_a_registry_redirects_blobs_elsewhere() {
    // Blob storage on another host (127.0.0.2): it refuses any request
    // that carries an Authorization header.
    let storage = Nginx::start_with(
        "127.0.0.2".parse().unwrap(),
        "if ($http_authorization) { return 403; }",
    );
    // The registry: docker-registry behind nginx with Basic auth, which
    // answers blob reads with a redirect to the storage host, as
    // registries backed by object stores do.
    let backend = Registry::start();
    let layout = tempfile::tempdir().unwrap();
    let image = build_image(layout.path(), "v1", &[3 * MIB, 100_000], 34);
    backend.push(layout.path(), "team/redirected", "v1");
    for (digest, _) in &image.blobs {
        let hex = &digest["sha256:".len()..];
        storage.put(
            hex,
            &std::fs::read(layout.path().join("blobs/sha256").join(hex)).unwrap(),
        );
    }
    let auth_dir = tempfile::tempdir().unwrap();
    let users = auth_dir.path().join("htpasswd");
    let ok = std::process::Command::new("htpasswd")
        .args(["-bc"])
        .arg(&users)
        .args([USER, PASSWORD])
        .output()
        .unwrap()
        .status
        .success();
    assert!(ok, "htpasswd (scripts/test installs apache2-utils)");
    let front = Nginx::start_with(
        LOOPBACK,
        &format!(
            "auth_basic \"registry\"; auth_basic_user_file {users};
        location ~ ^/v2/.+/blobs/sha256:([a-f0-9]+)$ {{ return 307 http://{storage}/$1; }}
        location / {{ proxy_pass http://{backend}; }}",
            users = users.display(),
            storage = std::net::SocketAddr::new(storage.ip, storage.port),
            backend = backend.addr(),
        ),
    );
    let host = std::net::SocketAddr::new(front.ip, front.port).to_string();
    let (_creds_dir, creds) = alice_for(&host);
    let upstream = format!("{host}=http://{host}");
    let cluster = Cluster::new(
        2,
        &[
            "--stripe-size",
            "1MiB",
            "--registry",
            &upstream,
            "--registry-credentials",
            &creds,
            // The storage host is on loopback: allowed only if named.
            "--allow-origin",
            "127.0.0.2",
        ],
    );
    let ns = format!("?ns={}", host.replace(':', "%3A"));
    pull_all(
        cluster.agents[1].mirror_addr(),
        &ns,
        "team/redirected",
        "v1",
        &image,
    );
    // The bytes really came from the storage host, with no credentials.
    for (digest, size) in &image.blobs {
        let served = storage.bytes_served(&format!("/{}", &digest["sha256:".len()..]));
        assert_eq!(served, *size, "{digest} from the storage host");
    }
}
