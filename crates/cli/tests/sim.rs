//! `shoal sim` scenarios from the command line:
//! the same arguments print the same bytes, and every output format
//! carries the figures.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::process::Command;

/// Runs `shoal sim` with `base` then `extra` arguments; its stdout.
fn run_sim(base: &[&str], extra: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_shoal"))
        .arg("sim")
        .args(base)
        .args(extra)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    String::from_utf8(out.stdout).unwrap()
}

fn sim(args: &[&str]) -> String {
    run_sim(&["placement", "--nodes", "512", "--seeds", "3"], args)
}

#[test]
fn placement_is_deterministic_in_every_format() {
    let table = sim(&[]);
    assert_eq!(
        table,
        sim(&["--threads", "1"]),
        "threads must not change results"
    );
    assert!(table.contains("| client hops |"), "{table}");
    assert_ne!(table, sim(&["--seed", "2"]), "another seed, other figures");

    let json: serde_json::Value = serde_json::from_str(&sim(&["--json"])).unwrap();
    assert_eq!(json["seeds"].as_array().unwrap().len(), 3);
    assert_eq!(json["pns"].as_array().unwrap().len(), 3);
    let pulls = json["pns"][0]["counts"]["pulls"].as_u64().unwrap();
    assert_eq!(pulls, 512 * 10, "one request of 10 stripes per node");

    let csv = sim(&["--csv"]);
    assert!(csv.starts_with("figure,rule,mean,p5,p95\n"));
    assert_eq!(csv.lines().count(), 1 + 12 * 3);

    let bad = Command::new(env!("CARGO_BIN_EXE_shoal"))
        .args(["sim", "placement", "--weights", "1,2"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("three numbers"));
}

#[test]
fn rollout_compares_every_system_and_is_deterministic() {
    let run = |extra: &[&str]| {
        let base = [
            "rollout", "--nodes", "120", "--object", "96MiB", "--stripe", "8MiB",
        ];
        run_sim(&base, extra)
    };
    let table = run(&[]);
    for system in ["shoal", "shoal, no relay", "direct", "flat", "dht", "swarm"] {
        assert!(table.contains(&format!("| {system} |")), "{table}");
    }
    // Read-ahead is in bytes: the old count of stripes is refused.
    let bad = Command::new(env!("CARGO_BIN_EXE_shoal"))
        .args(["sim", "rollout", "--nodes", "120", "--readahead", "4"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("in bytes"));
    assert_eq!(table, run(&["--threads", "1"]));
    let json: serde_json::Value =
        serde_json::from_str(&run(&["--json", "--systems", "direct"])).unwrap();
    let amp = json["rows"][0]["amplification"].as_f64().unwrap();
    assert!(
        (amp - 120.0).abs() < 1e-6,
        "direct takes the object once per node: {amp}"
    );
}

#[test]
fn scale_down_prints_a_summary_and_a_timeline() {
    let base = [
        "scale-down",
        "--joiners",
        "4",
        "--every",
        "2",
        "--object",
        "64MiB",
        "--stripe",
        "16MiB",
    ];
    let out = run_sim(&base, &[]);
    assert!(
        out.contains("| shoal |") && out.contains("| dht |"),
        "{out}"
    );
    assert!(out.matches(" s | ").count() >= 4, "{out}");
    assert_eq!(out, run_sim(&base, &["--threads", "1"]));
    let bad = Command::new(env!("CARGO_BIN_EXE_shoal"))
        .args(["sim", "scale-down", "--warm", "2", "--vanish", "3"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
}

#[test]
fn capacity_and_partition_run_from_the_command_line() {
    let cap = run_sim(
        &[
            "capacity",
            "--nodes",
            "100",
            "--models",
            "2",
            "--model",
            "2GB",
            "--disk",
            "10GB",
            "--stripes",
            "256MiB",
        ],
        &[],
    );
    assert!(cap.contains("| 2 | 4 GB | 256 MiB |"), "{cap}");
    let part = run_sim(
        &[
            "partition",
            "--nodes",
            "100",
            "--object",
            "64MiB",
            "--cuts",
            "0,0.1",
        ],
        &["--csv"],
    );
    assert_eq!(part.lines().count(), 1 + 2 * 2, "{part}");
    assert!(
        part.lines()
            .skip(1)
            .all(|l| l.starts_with("0%,") || l.starts_with("10%,")),
        "{part}"
    );
}

#[test]
fn churn_runs_every_rate_and_draws_its_figure() {
    let dir = std::env::temp_dir().join(format!("shoal-sim-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let png = dir.join("churn.png");
    let base = [
        "churn",
        "--nodes",
        "150",
        "--object",
        "64MiB",
        "--stripe",
        "8MiB",
        "--nic-gbps",
        "1",
        "--origin-gbps",
        "1",
        "--rates",
        "0,30",
        "--period",
        "5",
        "--systems",
        "shoal,dht",
    ];
    let out = run_sim(&base, &["--plot", png.to_str().unwrap()]);
    assert_eq!(out.matches("| shoal |").count(), 2, "{out}");
    assert!(out.contains("| 30% | dht |"), "{out}");
    let bytes = std::fs::read(&png).unwrap();
    assert_eq!(&bytes[1..4], b"PNG", "not a PNG");
    assert_eq!(out, run_sim(&base, &["--threads", "1"]));
    let json: serde_json::Value = serde_json::from_str(&run_sim(&base, &["--json"])).unwrap();
    let rows = json["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 4);
    assert!(
        rows[2]["leaves"].as_u64().unwrap() > 0,
        "30% churn left nobody"
    );

    let bad = Command::new(env!("CARGO_BIN_EXE_shoal"))
        .args(["sim", "churn", "--rates", "150"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    let unwritable = Command::new(env!("CARGO_BIN_EXE_shoal"))
        .args(["sim", "partition", "--nodes", "50", "--object", "8MiB"])
        .args(["--cuts", "0", "--plot", "/nonexistent-dir/x.png"])
        .output()
        .unwrap();
    assert!(!unwritable.status.success());
    assert!(String::from_utf8_lossy(&unwritable.stderr).contains("/nonexistent-dir/x.png"));
    std::fs::remove_dir_all(&dir).unwrap();
}
