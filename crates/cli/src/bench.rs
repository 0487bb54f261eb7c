//! `shoal bench`: benchmarks on real processes. `shoal bench cluster`
//! (root) builds a small datacenter of network namespaces with shaped
//! links and compares shoal with direct pulls and a central pull-through
//! cache. `shoal bench fetch` is its helper: one timed download, run
//! inside a node's namespace.

mod cluster;
mod net;
mod report;
mod scrape;
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
    /// Which link decides the result. `origin-bound`: 8 nodes in 2 racks
    /// with unshaped uplinks, 400 Mbit/s node links, a 100 Mbit/s origin,
    /// 256 MiB. `node-bound`: 16 nodes in 2 racks of 8 whose uplinks carry
    /// 400 Mbit/s each way (2:1), 100 Mbit/s node links, a 400 Mbit/s
    /// origin and central cache, 512 MiB, so how evenly the nodes share the
    /// uploads decides. The options below override the shape's values.
    #[arg(long, value_enum, default_value = "origin-bound")]
    shape: cluster::Shape,
    /// Nodes in each rollout (one more joins for the warm pull).
    #[arg(long)]
    nodes: Option<usize>,
    /// Racks the nodes are spread over (node i in rack i mod racks).
    #[arg(long)]
    racks: Option<usize>,
    /// Each rack's uplink, Mbit/s each way (default: unshaped for
    /// `origin-bound`).
    #[arg(long)]
    rack_mbit: Option<f64>,
    /// The object's size.
    #[arg(long)]
    size: Option<String>,
    /// shoal's stripe size.
    #[arg(long, default_value = "16MiB")]
    stripe: String,
    /// Each node's link, Mbit/s each way.
    #[arg(long)]
    node_mbit: Option<f64>,
    /// The origin's link, Mbit/s each way.
    #[arg(long)]
    origin_mbit: Option<f64>,
    /// The central cache's link, Mbit/s each way (default: a node's for
    /// `origin-bound`, the origin's for `node-bound`).
    #[arg(long)]
    cache_mbit: Option<f64>,
    /// The rollouts to run, in this order.
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = cluster::System::all())]
    systems: Vec<cluster::System>,
    /// Where to write the JSON report.
    #[arg(long, default_value = "bench-cluster.json")]
    json: PathBuf,
    /// A settings file every agent reads (`shoal agent --config`); the
    /// no-relay rollout sets `piece_size = 0` over it.
    #[arg(long)]
    agent_config: Option<PathBuf>,
    /// Keep the run's files (agent and origin logs) instead of removing
    /// them at the end.
    #[arg(long)]
    keep: bool,
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
    if let Some(warning) = memory_reporting() {
        eprintln!("shoal bench cluster: warning: {warning}");
    }
    let node_bound = matches!(a.shape, cluster::Shape::NodeBound);
    let pick = |v: Option<f64>, origin_bound: f64, node_bound_v: f64| {
        v.unwrap_or(if node_bound {
            node_bound_v
        } else {
            origin_bound
        })
    };
    let nodes = a.nodes.unwrap_or(if node_bound { 16 } else { 8 });
    let racks = a.racks.unwrap_or(2);
    if !(1..=200).contains(&nodes) {
        bail!("--nodes must be between 1 and 200");
    }
    if !(1..=nodes).contains(&racks) {
        bail!("--racks must be between 1 and --nodes");
    }
    let size_text = a
        .size
        .unwrap_or_else(|| if node_bound { "512MiB" } else { "256MiB" }.to_owned());
    let size = shoal_store::parse_size(&size_text).map_err(|e| anyhow::anyhow!("--size: {e}"))?;
    if size == 0 {
        bail!("--size must be positive");
    }
    let node_mbit = pick(a.node_mbit, 400.0, 100.0);
    let origin_mbit = pick(a.origin_mbit, 100.0, 400.0);
    let cache_mbit = pick(a.cache_mbit, node_mbit, origin_mbit);
    let rack_mbit = a.rack_mbit.or(node_bound.then_some(400.0));
    for (name, v) in [
        ("node-mbit", Some(node_mbit)),
        ("origin-mbit", Some(origin_mbit)),
        ("cache-mbit", Some(cache_mbit)),
        ("rack-mbit", rack_mbit),
    ] {
        if v.is_some_and(|v| !(v > 0.0 && v.is_finite())) {
            bail!("--{name} must be a positive number");
        }
    }
    if a.systems.is_empty() {
        bail!("--systems: name at least one");
    }
    let settings = cluster::Settings {
        shape: a.shape,
        nodes,
        racks,
        rack_mbit,
        size,
        stripe: a.stripe,
        node_mbit,
        origin_mbit,
        cache_mbit,
        systems: a.systems,
        agent_config: match &a.agent_config {
            Some(p) => std::fs::read_to_string(p)
                .with_context(|| format!("reading {}", p.display()))?
                .parse::<toml::Table>()
                .with_context(|| format!("{} is not TOML", p.display()))?,
            None => toml::Table::new(),
        },
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
    if a.keep {
        eprintln!("kept {}", work.display());
    } else {
        let _ = std::fs::remove_dir_all(&work);
    }
    let report = result?;
    print!("{}", report.text());
    std::fs::write(&a.json, serde_json::to_string_pretty(&report)?)
        .with_context(|| format!("writing {}", a.json.display()))?;
    eprintln!("JSON written to {}", a.json.display());
    Ok(())
}

/// Where Linux says how large a free block must be before it is handed
/// back to the hypervisor (free page reporting, virtio-balloon).
const PAGE_REPORTING_ORDER: &str = "/sys/module/page_reporting/parameters/page_reporting_order";

/// A warning if this machine is a VM that hands freed memory back to its
/// host. Every page the page cache then takes is faulted in by the host
/// again, and on a machine whose cores are all busy (this benchmark) the
/// agents' writes into their stores ran about ten times slower (6 GiB
/// written at 228 MB/s instead of 2.2 GB/s), which made the benchmark
/// measure the hypervisor. Orders above 10 turn reporting off.
fn memory_reporting() -> Option<String> {
    let order: u32 = std::fs::read_to_string(PAGE_REPORTING_ORDER)
        .ok()?
        .trim()
        .parse()
        .ok()?;
    (order <= 10).then(|| {
        format!(
            "this VM returns freed memory to its host (free page reporting, order {order}), which makes every new page-cache page costly and the figures slower than the network allows; `echo 11 > {PAGE_REPORTING_ORDER}` turns it off until reboot (see docs/benchmarks.md)"
        )
    })
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
