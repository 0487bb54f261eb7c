//! `shoal bench`: benchmarks on real processes. `shoal bench cluster`
//! (root) builds a small datacenter of network namespaces with shaped
//! links and compares shoal with direct pulls and a central pull-through
//! cache. `shoal bench fetch` is its helper: one timed download, run
//! inside a node's namespace.

mod cluster;
mod net;
mod report;
mod services;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use futures_util::StreamExt;
use sha2::{Digest, Sha256};
use std::path::PathBuf;
use std::time::Instant;

/// Arguments of `shoal bench`.
#[derive(Args)]
pub struct BenchArgs {
    #[command(subcommand)]
    cmd: BenchCmd,
}

#[derive(Subcommand)]
enum BenchCmd {
    /// Needs root. One network namespace per node on a bridge, links
    /// shaped with tc, nginx and docker-registry as the origin: a cold
    /// rollout through shoal, a warm pull, a rollout with a node killed,
    /// every node from the origin, and every node through a central
    /// docker-registry proxy cache.
    Cluster(ClusterArgs),
    /// Downloads a URL, discarding the bytes; prints its size, time and
    /// SHA-256 as JSON (used inside the benchmark's namespaces).
    #[command(hide = true)]
    Fetch {
        /// What to download.
        url: String,
    },
}

#[derive(Args)]
struct ClusterArgs {
    /// Nodes in each rollout (one more joins for the warm pull).
    #[arg(long, default_value_t = 8)]
    nodes: usize,
    /// The object's size.
    #[arg(long, default_value = "256MiB")]
    size: String,
    /// shoal's stripe size.
    #[arg(long, default_value = "16MiB")]
    stripe: String,
    /// Each node's link, Mbit/s each way.
    #[arg(long, default_value_t = 400.0)]
    node_mbit: f64,
    /// The origin's link, Mbit/s each way.
    #[arg(long, default_value_t = 100.0)]
    origin_mbit: f64,
    /// The central cache's link, Mbit/s each way (default: a node's).
    #[arg(long)]
    cache_mbit: Option<f64>,
    /// Where to write the JSON report.
    #[arg(long, default_value = "bench-cluster.json")]
    json: PathBuf,
}

/// Runs `shoal bench`.
pub async fn run(args: BenchArgs) -> Result<()> {
    match args.cmd {
        BenchCmd::Fetch { url } => fetch(&url).await,
        BenchCmd::Cluster(a) => cluster(a).await,
    }
}

async fn cluster(a: ClusterArgs) -> Result<()> {
    preflight()?;
    if !(1..=200).contains(&a.nodes) {
        bail!("--nodes must be between 1 and 200");
    }
    let size = shoal_store::parse_size(&a.size).map_err(|e| anyhow::anyhow!("--size: {e}"))?;
    if size == 0 {
        bail!("--size must be positive");
    }
    let cache_mbit = a.cache_mbit.unwrap_or(a.node_mbit);
    for (name, v) in [
        ("node-mbit", a.node_mbit),
        ("origin-mbit", a.origin_mbit),
        ("cache-mbit", cache_mbit),
    ] {
        if !(v > 0.0 && v.is_finite()) {
            bail!("--{name} must be a positive number");
        }
    }
    let settings = cluster::Settings {
        nodes: a.nodes,
        size,
        stripe: a.stripe,
        node_mbit: a.node_mbit,
        origin_mbit: a.origin_mbit,
        cache_mbit,
        work: std::env::temp_dir().join(format!("shoal-bench-{}", std::process::id())),
    };
    let work = settings.work.clone();
    eprintln!(
        "shoal bench cluster: setting up (files in {})",
        work.display()
    );
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let result = tokio::select! {
        r = cluster::run(&settings) => r,
        _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
        _ = term.recv() => Err(anyhow::anyhow!("terminated")),
    };
    let _ = std::fs::remove_dir_all(&work);
    let report = result?;
    print!("{}", report.text());
    std::fs::write(&a.json, serde_json::to_string_pretty(&report)?)
        .with_context(|| format!("writing {}", a.json.display()))?;
    eprintln!("JSON written to {}", a.json.display());
    Ok(())
}

/// Fails clearly unless this process is root and the tools are there.
fn preflight() -> Result<()> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let root = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|v| v.split_whitespace().nth(1))
        == Some("0");
    if !root {
        bail!("shoal bench cluster needs root: it creates network namespaces and shapes links");
    }
    for (tool, package) in [
        ("ip", "iproute2"),
        ("tc", "iproute2"),
        ("nginx", "nginx"),
        ("docker-registry", "docker-registry"),
    ] {
        let found = std::env::var_os("PATH")
            .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()));
        if !found {
            bail!("shoal bench cluster needs `{tool}` (Debian package {package})");
        }
    }
    Ok(())
}

/// One download: prints `{"bytes":..,"seconds":..,"sha256":".."}`.
async fn fetch(url: &str) -> Result<()> {
    let started = Instant::now();
    let resp = reqwest::get(url).await?;
    if !resp.status().is_success() {
        bail!("{url}: {}", resp.status());
    }
    let mut body = resp.bytes_stream();
    let (mut h, mut n) = (Sha256::new(), 0u64);
    while let Some(chunk) = body.next().await {
        let chunk = chunk.with_context(|| format!("{url}: the stream broke"))?;
        h.update(&chunk);
        n += chunk.len() as u64;
    }
    println!(
        "{}",
        serde_json::json!({
            "bytes": n,
            "seconds": started.elapsed().as_secs_f64(),
            "sha256": format!("sha256:{}", hex::encode(h.finalize())),
        })
    );
    Ok(())
}
