//! TLS with certificates made by `openssl`: origins over HTTPS (an agent
//! given `--ca-file` trusts that CA besides the system's roots; one
//! without it refuses the origin), and mutual TLS between peers.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use common::*;
use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn an_https_origin_signed_by_a_private_ca_needs_the_ca_file() {
    let pki = tempfile::tempdir().unwrap();
    private_ca(pki.path());
    let nginx = Nginx::start_tls(&pki.path().join("srv.pem"), &pki.path().join("srv.key"));
    let bytes = random_bytes(3 << 20, 77);
    let url = nginx.put("obj", &bytes).replacen("http://", "https://", 1);
    let digest = sha256(&bytes);

    let ca = pki.path().join("ca.pem").display().to_string();
    let trusting = Cluster::new(1, &["--stripe-size", "1MiB", "--ca-file", &ca]);
    let (child, out) = trusting.spawn_get(0, &url, Some(&digest));
    let (ok, err) = finish(child, &out);
    assert!(ok, "with the CA file: {err}");
    assert_eq!(file_sha256(&out), digest);

    let served = nginx.bytes_served("/obj");
    let plain = Cluster::new(1, &["--stripe-size", "1MiB"]);
    let (child, out) = plain.spawn_get(0, &url, Some(&digest));
    let (ok, err) = finish(child, &out);
    assert!(!ok, "without the CA file the origin must not be trusted");
    assert_eq!(
        nginx.bytes_served("/obj"),
        served,
        "no request got through the handshake: {err}"
    );
    let first = err.lines().next().unwrap_or("");
    eprintln!("without the CA file: {first}");
    assert!(
        first.to_lowercase().contains("certificate"),
        "the error should say the certificate was refused: {first}"
    );
}

/// `request` sent over TLS to `addr` by `openssl s_client`, trusting
/// `ca` and presenting `identity` (certificate, key) if given: whether
/// the handshake and exchange worked, and what came back.
fn over_tls(
    addr: SocketAddr,
    ca: &Path,
    identity: Option<(&Path, &Path)>,
    request: &str,
) -> (bool, String) {
    let mut cmd = Command::new("openssl");
    cmd.args([
        "s_client",
        "-quiet",
        "-connect",
        &addr.to_string(),
        "-CAfile",
    ])
    .arg(ca)
    .stdin(Stdio::piped())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    if let Some((cert, key)) = identity {
        cmd.arg("-cert").arg(cert).arg("-key").arg(key);
    }
    let mut child = cmd.spawn().unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(request.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    (
        out.status.success() && !text.is_empty(),
        text + &String::from_utf8_lossy(&out.stderr),
    )
}

/// Peers over mutual TLS: three agents with certificates of one CA (none
/// naming the address it is reached at) pull an object with the right
/// digest through each other. The peer port speaks no plain HTTP; a
/// client with no certificate gets no peer route; one with a certificate
/// of another CA fails the handshake, and an agent holding one gets no
/// byte from any peer. A certificate rotated on disk is served within
/// seconds, without a restart.
#[test]
fn peers_use_mutual_tls_and_refuse_other_certificates() {
    let pki = tempfile::tempdir().unwrap();
    let p = pki.path();
    mint_ca(p, "ca");
    mint_ca(p, "other");
    let both = "serverAuth,clientAuth";
    mint_leaf(p, "ca", "node", "node", "DNS:node.shoal.test", both);
    mint_leaf(p, "ca", "rotated", "rotated", "DNS:node.shoal.test", both);
    mint_leaf(
        p,
        "other",
        "intruder",
        "intruder",
        "DNS:node.shoal.test",
        both,
    );
    let path = |f: &str| p.join(f).display().to_string();
    // n0 reads its certificate from files that are replaced later.
    let tls = |leaf: &str| {
        vec![
            "--tls-ca-file".to_owned(),
            path("ca.pem"),
            "--tls-cert-file".to_owned(),
            path(&format!("{leaf}.pem")),
            "--tls-key-file".to_owned(),
            path(&format!("{leaf}.key")),
        ]
    };
    std::fs::copy(p.join("node.pem"), p.join("live.pem")).unwrap();
    std::fs::copy(p.join("node.key"), p.join("live.key")).unwrap();
    let mut extra = vec!["--stripe-size".to_owned(), "1MiB".to_owned()];
    extra.extend(tls("live"));
    let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
    let cluster = Cluster::new(3, &extra);

    let nginx = Nginx::start();
    let bytes = random_bytes(8 << 20, 78);
    let url = nginx.put("obj", &bytes);
    let digest = sha256(&bytes);
    for i in 0..3 {
        let (child, out) = cluster.spawn_get(i, &url, Some(&digest));
        let (ok, err) = finish(child, &out);
        assert!(ok, "n{i} over TLS: {err}");
        assert_eq!(file_sha256(&out), digest);
    }
    let from_peers: f64 = cluster
        .agents
        .iter()
        .map(|a| {
            a.metric("shoal_served_bytes_total{source=\"Peer\"}")
                + a.metric("shoal_served_bytes_total{source=\"Rack\"}")
        })
        .sum();
    assert!(from_peers > 0.0, "no bytes crossed between peers");
    assert_eq!(
        nginx.bytes_served("/obj"),
        bytes.len() as u64,
        "the origin sent the object once"
    );

    let n0 = cluster.agents[0].peer_addr();
    let ask = format!(
        "GET /peer/v1/status HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\nConnection: close\r\n\r\n"
    );
    let plain = http_exchange(n0, &ask);
    assert!(
        plain.as_ref().is_none_or(|(code, _)| *code != 200),
        "plain HTTP got an answer: {plain:?}"
    );
    let (_, anonymous) = over_tls(n0, &p.join("ca.pem"), None, &ask);
    assert!(
        anonymous.contains("401") && anonymous.contains("client certificate"),
        "{anonymous}"
    );
    let (_, member) = over_tls(
        n0,
        &p.join("ca.pem"),
        Some((&p.join("node.pem"), &p.join("node.key"))),
        &ask,
    );
    assert!(member.contains("200 OK"), "{member}");
    let (ok, foreign) = over_tls(
        n0,
        &p.join("ca.pem"),
        Some((&p.join("intruder.pem"), &p.join("intruder.key"))),
        &ask,
    );
    assert!(
        !ok && !foreign.contains("200 OK"),
        "a foreign certificate was let in: {foreign}"
    );

    // An agent with a certificate of another CA, seeded with n0: every
    // peer refuses it, so whatever it reads comes from the origin.
    let dir = tempfile::tempdir().unwrap();
    let (port, api) = (free_port(), free_port());
    let mut args = base_args(7, LOOPBACK, port, api, &dir);
    args.extend([
        "--stripe-size".into(),
        "1MiB".into(),
        "--seed".into(),
        n0.to_string(),
    ]);
    args.extend(["--tls-ca-file".into(), path("other.pem")]);
    args.extend([
        "--tls-cert-file".into(),
        path("intruder.pem"),
        "--tls-key-file".into(),
        path("intruder.key"),
    ]);
    let mut intruder = Agent::new(7, port, api, &dir, args);
    intruder.start();
    std::thread::sleep(Duration::from_secs(3));
    let (child, out) = intruder.spawn_get(&url, Some(&digest));
    let (ok, err) = finish(child, &out);
    assert!(ok, "the intruder still reads the origin: {err}");
    let got = intruder.metric("shoal_served_bytes_total{source=\"Peer\"}")
        + intruder.metric("shoal_served_bytes_total{source=\"Rack\"}");
    assert_eq!(got, 0.0, "a peer sent the intruder bytes");

    // Rotation: n0's files are replaced; its peer port presents the new
    // certificate without a restart.
    std::fs::copy(p.join("rotated.pem"), p.join("live.pem")).unwrap();
    std::fs::copy(p.join("rotated.key"), p.join("live.key")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, text) = over_tls(
            n0,
            &p.join("ca.pem"),
            Some((&p.join("node.pem"), &p.join("node.key"))),
            "",
        );
        if text.contains("CN=rotated") || text.contains("CN = rotated") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the rotated certificate was not picked up: {text}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let (child, out) = cluster.spawn_get(1, &url, Some(&digest));
    let (ok, err) = finish(child, &out);
    assert!(ok, "after the rotation: {err}");
}
