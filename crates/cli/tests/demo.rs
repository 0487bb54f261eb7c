//! `shoal demo` against nginx as its origin: what it prints about the
//! origin must match what nginx's access log says it served, and every
//! surviving node must hold the object nginx has.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use common::*;
use std::process::Command;

const MIB: u64 = 1 << 20;

#[test]
fn the_demo_reports_what_the_origin_really_served() {
    let size = 24 * MIB;
    let nginx = Nginx::start();
    let one = random_bytes(size as usize, 1);
    let two = random_bytes(size as usize, 2);
    let base = nginx.put("round-1.bin", &one);
    let base = base.trim_end_matches("round-1.bin").to_owned();
    nginx.put("round-2.bin", &two);
    let out = Command::new(env!("CARGO_BIN_EXE_shoal"))
        .args([
            "demo", "--nodes", "4", "--size", "24MiB", "--stripe", "2MiB",
        ])
        .args(["--origin", &base, "--json"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    let rounds: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let rounds = rounds.as_array().unwrap();
    assert_eq!(rounds.len(), 2);

    for (r, bytes) in rounds.iter().zip([&one, &two]) {
        let object = r["object"].as_str().unwrap();
        let served = nginx.bytes_served(&format!("/{object}"));
        let reported = r["agents_origin_bytes"].as_f64().unwrap();
        let nodes = r["nodes"].as_array().unwrap();
        let killed = nodes.iter().filter(|n| n["killed"] == true).count();
        if object == "round-1.bin" {
            assert_eq!(killed, 0);
            // Every byte crossed the origin link once, and the demo's
            // figure is nginx's.
            assert_eq!(served, size, "nginx served {served} for {object}");
            assert_eq!(reported, served as f64, "{object}");
            assert!((r["amplification"].as_f64().unwrap() - 1.0).abs() < 1e-9);
        } else {
            assert_eq!(killed, 1, "round 2 kills one node");
            // The killed node may have been fetching from the origin: what
            // it received is not in the survivors' count.
            assert!(reported <= served as f64, "{reported} > {served}");
            assert!(served as f64 <= reported + size as f64);
            assert!(served >= size, "the object crossed the origin link");
        }
        for n in nodes.iter().filter(|n| n["killed"] == false) {
            assert_eq!(n["bytes"].as_u64(), Some(size), "{n}");
            assert_eq!(n["sha256"].as_str(), Some(sha256(bytes).as_str()), "{n}");
            assert!(n["error"].is_null(), "{n}");
        }
    }
}

#[test]
fn the_demo_runs_with_its_embedded_origin_and_cleans_up() {
    let child = Command::new(env!("CARGO_BIN_EXE_shoal"))
        .args(["demo", "--nodes", "3", "--size", "8MiB", "--stripe", "1MiB"])
        .arg("--no-kill")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(text.matches("whole, digest ok").count(), 3, "{text}");
    // Its agents are gone, and so is their data.
    let dir = std::env::temp_dir().join(format!("shoal-demo-{pid}"));
    assert!(!dir.exists(), "{} is left behind", dir.display());
    let mark = dir.display().to_string();
    common::assert_no_process_mentions(&mark);
    let bad = Command::new(env!("CARGO_BIN_EXE_shoal"))
        .args(["demo", "--nodes", "1"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    // Agents that refuse their settings: the demo says why.
    let refused = Command::new(env!("CARGO_BIN_EXE_shoal"))
        .args(["demo", "--nodes", "2", "--stripe", "1KiB"])
        .output()
        .unwrap();
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains("stripe_size"), "{err}");
}
