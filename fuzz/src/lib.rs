//! The fuzz targets' bodies, one function per parser: each takes the
//! fuzzer's bytes and must return (an `Err` is fine) without panicking,
//! hanging or allocating without bound. `src/bin/<target>.rs` hands each
//! to AFL; a crash input found becomes a regression test in the crate
//! that owns the parser.

use bytes::Bytes;
use std::time::Duration;

/// Every target, by name (the binaries and corpus directories).
pub const TARGETS: &[&str] = &[
    "oci_refs",
    "range",
    "www_authenticate",
    "token_response",
    "docker_config",
    "manifest",
    "peer_query",
    "frame_decoder",
    "hosts_toml",
    "agent_toml",
    "origin_pattern",
];

fn text(data: &[u8]) -> Option<&str> {
    std::str::from_utf8(data).ok()
}

/// Repository names, references, digests and mirror routes.
pub fn oci_refs(data: &[u8]) {
    let Some(s) = text(data) else { return };
    let _ = shoal_oci::Name::parse(s);
    let _ = shoal_oci::Reference::parse(s);
    if let Ok(d) = shoal_oci::Digest::parse(s) {
        let _ = d.matches(data);
    }
    let _ = shoal_oci::route(s);
    let _ = shoal_agent::proto::check_digest(s);
    let _ = shoal_agent::proto::check_url(s);
}

/// A `Range` header, resolved against sizes from the input.
pub fn range(data: &[u8]) {
    let Some(s) = text(data) else { return };
    if let Some(r) = shoal_agent::object::ByteRange::parse(s) {
        for size in [0, 1, data.len() as u64, u64::MAX] {
            let _ = r.resolve(size);
        }
    }
}

/// `WWW-Authenticate` challenges and `Authorization: Basic` values.
pub fn www_authenticate(data: &[u8]) {
    let Some(s) = text(data) else { return };
    let _ = shoal_oci::auth::Challenge::parse(s);
    let _ = shoal_oci::auth::Credential::from_basic(s);
}

/// A token endpoint's JSON answer.
pub fn token_response(data: &[u8]) {
    if let Ok(t) = serde_json::from_slice::<shoal_oci::auth::TokenResponse>(data) {
        let _ = t.bearer();
        let _ = t.usable_secs();
    }
}

/// A docker `config.json`.
pub fn docker_config(data: &[u8]) {
    let Some(s) = text(data) else { return };
    let _ = shoal_oci::auth::parse_docker_config(s);
}

/// Manifests and indexes.
pub fn manifest(data: &[u8]) {
    let _ = shoal_oci::Manifest::parse(data);
}

/// The peer protocol's query string, as the stripe endpoint reads it.
pub fn peer_query(data: &[u8]) {
    use shoal_agent::proto::{StripeQuery, StripeRequest, Wire};
    if let Ok(q) = serde_urlencoded::from_bytes::<StripeQuery>(data)
        && let Ok(r) = StripeRequest::from_query(q)
    {
        let _ = r.to_query();
    }
}

/// The frame decoder, fed the input in two pieces (split where the
/// first byte says) as a network would.
pub fn frame_decoder(data: &[u8]) {
    let Some((&cut, rest)) = data.split_first() else {
        return;
    };
    let at = (cut as usize).min(rest.len());
    let mut dec = shoal_agent::proto::Decoder::default();
    for piece in [&rest[..at], &rest[at..]] {
        dec.push(Bytes::copy_from_slice(piece));
        loop {
            match dec.next_frame() {
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => break,
            }
        }
    }
}

/// An existing `hosts.toml` the agent writes its mirror over.
pub fn hosts_toml(data: &[u8]) {
    let Some(theirs) = text(data) else { return };
    let Ok(file) = shoal_oci::hosts::HostsFile::new(
        "registry.example:5000",
        None,
        "http://127.0.0.1:7440",
        Duration::from_millis(500),
    ) else {
        return;
    };
    let _ = shoal_oci::hosts::is_ours(theirs);
    let out = file.render_over(Some(theirs));
    let _ = out.parse::<toml::Table>();
}

/// The agent's settings file.
pub fn agent_toml(data: &[u8]) {
    let Some(s) = text(data) else { return };
    if let Ok(mut c) = shoal_agent::AgentConfig::from_text(s) {
        // resolve() reads token_file: no file I/O in the fuzz loop.
        c.token_file = None;
        let _ = c.resolve();
    }
}

/// Origin allow-list patterns, and URLs checked against them.
pub fn origin_pattern(data: &[u8]) {
    use shoal_agent::origin::allow::{OriginPolicy, Pattern};
    let Some(s) = text(data) else { return };
    let (pattern, url) = s.split_once('\n').unwrap_or((s, s));
    if let Ok(p) = Pattern::parse(pattern)
        && let Ok(u) = url::Url::parse(url)
    {
        let _ = p.matches(&u);
    }
    if let Ok(policy) = OriginPolicy::new(&[pattern.to_owned()], &[], &[]) {
        let _ = policy.admit(url);
    }
}

/// Runs the target called `name` on `data`; false for an unknown name.
pub fn run(name: &str, data: &[u8]) -> bool {
    let f: fn(&[u8]) = match name {
        "oci_refs" => oci_refs,
        "range" => range,
        "www_authenticate" => www_authenticate,
        "token_response" => token_response,
        "docker_config" => docker_config,
        "manifest" => manifest,
        "peer_query" => peer_query,
        "frame_decoder" => frame_decoder,
        "hosts_toml" => hosts_toml,
        "agent_toml" => agent_toml,
        "origin_pattern" => origin_pattern,
        _ => return false,
    };
    f(data);
    true
}

/// Seed inputs for each target: valid examples of what the parser
/// reads, made with the encoders where there are any, so the fuzzer
/// starts from the accepted language. `fuzz/run --seed` writes them to
/// `fuzz/corpus/<target>/`.
pub fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    use shoal_agent::proto::{Frame, ObjectSpec, StripeRef, StripeRequest, Wire, chunk_sum};
    use shoal_placement::NodeId;
    let hex = "a3ed95caeb02ffe68cdd9fd84406680ae93d633cb16422d00e8a7c22955b46d4";
    let digest = format!("sha256:{hex}");
    let object = ObjectSpec {
        url: "https://registry.example/v2/team/app/blobs/".to_owned() + &digest,
        size: 64 << 20,
        validator: Some("\"etag-1\"".into()),
        digest: Some(digest.clone()),
    };
    let stripe = StripeRef {
        object,
        stripe_size: 16 << 20,
        index: 2,
    };
    let ids = [NodeId::from_name("n1"), NodeId::from_name("n2")];
    let mut req = StripeRequest::new(stripe, &ids, &ids[1..], 120_000);
    req.from = 4096;
    let data = Bytes::from_static(b"some stripe bytes");
    let mut frames = vec![0u8];
    for f in [
        Frame::Data(data.clone(), Some(chunk_sum(&data))),
        Frame::Data(data, None),
        Frame::KeepAlive,
        Frame::End {
            len: 34,
            checksum: [7; 32],
        },
    ] {
        frames.extend_from_slice(&f.encode());
    }
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{digest}","size":1469}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{digest}","size":3623807}}]}}"#
    );
    let index = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{digest}","size":1024,"platform":{{"architecture":"amd64","os":"linux"}}}}]}}"#
    );
    let s = |x: &str| x.as_bytes().to_vec();
    vec![
        ("oci_refs", s("library/alpine:3.20")),
        ("oci_refs", s(&format!("/v2/team/app/blobs/{digest}"))),
        ("oci_refs", s("/v2/library/alpine/manifests/latest")),
        ("oci_refs", s(&digest)),
        ("range", s("bytes=0-99")),
        ("range", s("bytes=-500")),
        ("range", s("bytes=1048576-")),
        (
            "www_authenticate",
            s(
                r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/alpine:pull""#,
            ),
        ),
        ("www_authenticate", s(r#"Basic realm="registry""#)),
        ("www_authenticate", s("Basic YWxpY2U6czNjcmV0")),
        (
            "token_response",
            s(r#"{"token":"eyJ0","expires_in":300,"issued_at":"2026-12-03T12:00:00Z"}"#),
        ),
        ("token_response", s(r#"{"access_token":"abc"}"#)),
        (
            "docker_config",
            s(
                r#"{"auths":{"ghcr.io":{"auth":"YWxpY2U6czNjcmV0"},"https://index.docker.io/v1/":{"username":"a","password":"b"}}}"#,
            ),
        ),
        ("manifest", manifest.into_bytes()),
        ("manifest", index.into_bytes()),
        ("peer_query", req.to_query().into_bytes()),
        ("frame_decoder", frames),
        (
            "hosts_toml",
            s(
                "server = \"https://registry.example:5000\"\n\n[host.\"https://mirror.example\"]\n  capabilities = [\"pull\", \"resolve\"]\n  ca = \"/etc/certs/ca.pem\"\n",
            ),
        ),
        ("agent_toml", s(shoal_agent::config::DEFAULTS)),
        (
            "agent_toml",
            s(
                "name = \"n1\"\nseeds = [\"a:1\"]\n[origins]\nallow = [\"*.example.com/models\"]\n[tls]\nca_file = \"/c\"\ncert_file = \"/d\"\nkey_file = \"/e\"\n",
            ),
        ),
        (
            "origin_pattern",
            s(
                "https://models.example.com/weights/\nhttps://models.example.com/weights/../a.bin?sig=1",
            ),
        ),
        (
            "origin_pattern",
            s("*.s3.amazonaws.com\nhttp://[::ffff:127.0.0.1]:8080/x"),
        ),
    ]
}
