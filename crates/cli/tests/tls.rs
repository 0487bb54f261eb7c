//! Origins over HTTPS (nginx with a certificate from a private CA made
//! with `openssl`): an agent given `--ca-file` trusts that CA besides the
//! system's roots; an agent without it refuses the origin.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use common::*;

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
