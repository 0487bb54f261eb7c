//! `shoal bench cluster` at a tiny size: it runs every system, reports
//! every node, and removes every namespace, process and file it made,
//! also when it fails half-way. Needs root (skips otherwise, unless
//! `SHOAL_REQUIRE_PRIVILEGED` is set).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::process::{Command, Output};
use std::sync::Mutex;

/// Each run builds a whole testbed; one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn available() -> bool {
    common::privileged(&[
        ("ip", "-V"),
        ("tc", "-V"),
        ("nginx", "-v"),
        ("docker-registry", "--version"),
    ])
}

/// Runs `shoal bench cluster` with `args`; its output and pid.
fn bench(args: &[&str]) -> (Output, u32) {
    let _one = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let child = Command::new(env!("CARGO_BIN_EXE_shoal"))
        .args(["bench", "cluster"])
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    (child.wait_with_output().unwrap(), pid)
}

/// Nothing of run `pid` is left: no namespace, no process, no files.
fn assert_gone(pid: u32) {
    let prefix = format!("shb{}", pid % 100_000);
    let list = Command::new("ip").args(["netns", "list"]).output().unwrap();
    let list = String::from_utf8_lossy(&list.stdout);
    assert!(
        !list.lines().any(|l| l.starts_with(&prefix)),
        "namespaces left: {list}"
    );
    let links = Command::new("ip").args(["-o", "link"]).output().unwrap();
    assert!(!String::from_utf8_lossy(&links.stdout).contains(&format!("{prefix}t")));
    let work = std::env::temp_dir().join(format!("shoal-bench-{pid}"));
    assert!(!work.exists(), "{} left", work.display());
    let mark = work.display().to_string();
    common::assert_no_process_mentions(&mark);
}

#[test]
fn a_tiny_bench_reports_every_system_and_leaves_nothing_behind() {
    if !available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("bench.json");
    let (out, pid) = bench(&[
        "--nodes",
        "3",
        "--size",
        "8MiB",
        "--stripe",
        "1MiB",
        "--node-mbit",
        "800",
        "--origin-mbit",
        "400",
        "--racks",
        "2",
        "--rack-mbit",
        "800",
        "--json",
        json.to_str().unwrap(),
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_gone(pid);
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let rows = report["rows"].as_array().unwrap();
    let systems: Vec<&str> = rows.iter().map(|r| r["system"].as_str().unwrap()).collect();
    assert_eq!(
        systems,
        [
            "shoal, cold",
            "shoal, a node killed",
            "shoal, no rack relay",
            "direct",
            "central cache (registry proxy)"
        ]
    );
    // The agents' own count of origin bytes agrees with the origin's
    // access log (the killed node's count went with it).
    let counted = |r: &serde_json::Value| r["agents"]["shoal_origin_bytes_total"].as_f64().unwrap();
    assert_eq!(counted(&rows[0]), rows[0]["origin_bytes"].as_f64().unwrap());
    assert!(counted(&rows[1]) <= rows[1]["origin_bytes"].as_f64().unwrap());
    assert_eq!(counted(&rows[2]), rows[2]["origin_bytes"].as_f64().unwrap());
    assert!(rows[3].get("agents").is_none(), "direct has no agents");
    for r in rows {
        let secs = r["seconds"].as_array().unwrap();
        assert_eq!(secs.len(), 3, "{r}");
        let killed = secs.iter().filter(|s| s.is_null()).count();
        let want = usize::from(r["system"] == "shoal, a node killed");
        assert_eq!(killed, want, "{r}");
        // Every byte came from the origin at least once, and direct once
        // per node.
        assert!(r["amplification"].as_f64().unwrap() >= 1.0, "{r}");
    }
    assert_eq!(rows[3]["amplification"].as_f64(), Some(3.0));
    assert!(report["warm"]["seconds"].as_f64().unwrap() > 0.0);
}

#[test]
fn a_failing_bench_says_why_and_still_cleans_up() {
    if !available() {
        return;
    }
    // Agents refuse a 1 KiB stripe: the run fails after the testbed is up.
    let (out, pid) = bench(&["--nodes", "2", "--size", "1MiB", "--stripe", "1KiB"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("agent-n0 exited") || err.contains("agent-n1 exited"),
        "{err}"
    );
    assert_gone(pid);
}
