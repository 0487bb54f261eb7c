//! `shoal sim`: the simulator's scenarios on the command line. The
//! models live in `shoal-sim`; this only parses options, shows progress
//! and prints.

use anyhow::{Result, bail};
use clap::{Args, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use shoal_sim::counting::{Counting, Eps, Pinning};
use shoal_sim::timed::net::Network;
use shoal_sim::timed::{System, Timed};
use shoal_sim::{placement, rollout};
use std::time::Instant;

/// Arguments of `shoal sim`.
#[derive(Args)]
pub struct SimArgs {
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Subcommand)]
enum Scenario {
    /// The counting model: hops, locality, copies and serve skew, nearest
    /// tier against uniform choice, paired by seed.
    Placement(Box<PlacementArgs>),
    /// The timed model: one object to every node at once, cold, under
    /// shoal and the baselines (direct, flat owner hash, DHT providers).
    Rollout(Box<RolloutArgs>),
}

#[derive(Clone, Copy, ValueEnum)]
enum SystemArg {
    Shoal,
    Direct,
    Flat,
    Dht,
}

#[derive(Args)]
struct RolloutArgs {
    /// Nodes in the fleet.
    #[arg(long, default_value_t = 10_000)]
    nodes: usize,
    /// The seed.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// The object's size.
    #[arg(long, default_value = "4GiB")]
    object: String,
    /// Stripe size.
    #[arg(long, default_value = "64MiB")]
    stripe: String,
    /// Stripes a client fetches at once.
    #[arg(long, default_value_t = 4)]
    readahead: usize,
    /// V: the L2 finger set has V*b nodes.
    #[arg(long, default_value_t = 2)]
    v: usize,
    /// Node NIC speed, each way, Gbit/s.
    #[arg(long, default_value_t = 25.0)]
    nic_gbps: f64,
    /// Rack uplink oversubscription.
    #[arg(long, default_value_t = 4.0)]
    rack_oversub: f64,
    /// Row uplink oversubscription.
    #[arg(long, default_value_t = 2.0)]
    row_oversub: f64,
    /// The origin's link, Gbit/s.
    #[arg(long, default_value_t = 10.0)]
    origin_gbps: f64,
    /// Delay to a transfer's first byte per hop, ms.
    #[arg(long, default_value_t = 0.5)]
    hop_latency_ms: f64,
    /// Shortest time step, ms.
    #[arg(long, default_value_t = 5.0)]
    step_ms: f64,
    /// Nodes per rack.
    #[arg(long, default_value_t = 32)]
    nodes_per_rack: usize,
    /// Racks per row.
    #[arg(long, default_value_t = 16)]
    racks_per_row: usize,
    /// Systems to compare.
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = [SystemArg::Shoal, SystemArg::Direct, SystemArg::Flat, SystemArg::Dht])]
    systems: Vec<SystemArg>,
    #[command(flatten)]
    out: Output,
}

impl RolloutArgs {
    fn config(&self) -> Result<Timed> {
        let size = |what: &str, s: &str| {
            shoal_store::parse_size(s).map_err(|e| anyhow::anyhow!("--{what} {s:?}: {e}"))
        };
        if self.nodes < 2 {
            bail!("--nodes must be at least 2");
        }
        let mut c = Timed::new(self.nodes);
        c.object_bytes = size("object", &self.object)?;
        c.stripe_bytes = size("stripe", &self.stripe)?;
        if c.object_bytes == 0 || c.stripe_bytes == 0 {
            bail!("--object and --stripe must be positive");
        }
        for (name, v) in [
            ("nic-gbps", self.nic_gbps),
            ("origin-gbps", self.origin_gbps),
            ("rack-oversub", self.rack_oversub),
            ("row-oversub", self.row_oversub),
            ("step-ms", self.step_ms),
        ] {
            if !(v > 0.0 && v.is_finite()) {
                bail!("--{name} must be a positive number");
            }
        }
        c.readahead = self.readahead.max(1);
        c.v = self.v;
        c.topology.nodes_per_rack = self.nodes_per_rack.max(1);
        c.topology.racks_per_row = self.racks_per_row.max(1);
        c.network = Network {
            nic_gbps: self.nic_gbps,
            rack_oversub: self.rack_oversub,
            row_oversub: self.row_oversub,
            origin_gbps: self.origin_gbps,
            hop_latency_ms: self.hop_latency_ms.max(0.0),
            step_ms: self.step_ms,
        };
        Ok(c)
    }
}

/// How results are printed.
#[derive(Args)]
struct Output {
    /// Print JSON (every run, every figure) instead of a table.
    #[arg(long, conflicts_with = "csv")]
    json: bool,
    /// Print CSV instead of a table.
    #[arg(long)]
    csv: bool,
    /// Worker threads (default: all cores).
    #[arg(long)]
    threads: Option<usize>,
}

#[derive(Clone, Copy, ValueEnum)]
enum PinningArg {
    Successors,
    Nearest,
    Uniform,
}

#[derive(Args)]
struct PlacementArgs {
    /// Nodes in the fleet.
    #[arg(long, default_value_t = 16_384)]
    nodes: usize,
    /// Seeds to run (each twice: nearest tier and uniform).
    #[arg(long, default_value_t = 30)]
    seeds: usize,
    /// The first seed.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Nodes per rack.
    #[arg(long, default_value_t = 32)]
    nodes_per_rack: usize,
    /// Racks per row (rows follow from --nodes).
    #[arg(long, default_value_t = 16)]
    racks_per_row: usize,
    /// Weights of a hop inside a rack, across racks, across rows.
    #[arg(long, value_delimiter = ',', default_values_t = [1.0, 4.0, 8.0])]
    weights: Vec<f64>,
    /// Files.
    #[arg(long, default_value_t = 20)]
    files: usize,
    /// Stripes per file.
    #[arg(long, default_value_t = 10)]
    stripes: usize,
    /// Zipf exponent of file popularity.
    #[arg(long, default_value_t = 1.0)]
    alpha: f64,
    /// Requests per node.
    #[arg(long, default_value_t = 1.0)]
    requests: f64,
    /// Per-node LRU capacity in stripes (default 2*b^2).
    #[arg(long)]
    capacity: Option<usize>,
    /// r: the owner and its successors.
    #[arg(long, default_value_t = 8)]
    replicas: usize,
    /// V: the L2 finger set has V*b nodes.
    #[arg(long, default_value_t = 2)]
    v: usize,
    /// eps as a value (default 1/b).
    #[arg(long, conflicts_with = "eps_k")]
    eps: Option<f64>,
    /// eps = min(1, k*b^2*ln(b)/N) with this k.
    #[arg(long)]
    eps_k: Option<f64>,
    /// Choose H2 uniformly even under nearest-tier routing.
    #[arg(long)]
    uniform_l2: bool,
    /// Choose H1 uniformly even under nearest-tier routing.
    #[arg(long)]
    uniform_l1: bool,
    /// Pin the owner and r-1 replicas of every stripe fetched from the
    /// origin, placed this way.
    #[arg(long, value_enum)]
    pinned: Option<PinningArg>,
    /// An H2 that serves a hit pushes a copy to a cold H1.
    #[arg(long)]
    eager_push: bool,
    /// Share of nodes dead (they ask nothing and are never routed to).
    #[arg(long, default_value_t = 0.0)]
    dead: f64,
    #[command(flatten)]
    out: Output,
}

impl PlacementArgs {
    fn config(&self) -> Result<Counting> {
        if self.nodes < 2 {
            bail!("--nodes must be at least 2");
        }
        if self.files == 0 || self.stripes == 0 {
            bail!("--files and --stripes must be positive");
        }
        if !(0.0..1.0).contains(&self.dead) {
            bail!("--dead is a share below 1");
        }
        let [rack, row, fleet] = self.weights[..] else {
            bail!("--weights takes three numbers: rack,row,fleet");
        };
        let mut c = Counting::new(self.nodes);
        c.topology.nodes_per_rack = self.nodes_per_rack.max(1);
        c.topology.racks_per_row = self.racks_per_row.max(1);
        c.weights = shoal_sim::topology::Weights { rack, row, fleet };
        c.workload.files = self.files;
        c.workload.stripes = self.stripes;
        c.workload.alpha = self.alpha;
        c.workload.requests_per_node = self.requests;
        c.capacity = self.capacity;
        c.replicas = self.replicas;
        c.v = self.v;
        c.eps = match (self.eps, self.eps_k) {
            (Some(e), _) => Eps::Value(e),
            (None, Some(k)) => Eps::Scaled(k),
            (None, None) => Eps::Default,
        };
        c.nearest_l2 = !self.uniform_l2;
        c.nearest_l1 = !self.uniform_l1;
        c.pinning = self.pinned.map(|p| match p {
            PinningArg::Successors => Pinning::Successors,
            PinningArg::Nearest => Pinning::Nearest,
            PinningArg::Uniform => Pinning::Uniform,
        });
        c.eager_push = self.eager_push;
        c.dead = self.dead;
        Ok(c)
    }
}

fn threads(out: &Output) -> usize {
    out.threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

fn bar(len: u64) -> ProgressBar {
    let pb = ProgressBar::new(len);
    if let Ok(style) =
        ProgressStyle::with_template("{bar:40} {pos}/{len} runs, {elapsed} (eta {eta})")
    {
        pb.set_style(style);
    }
    pb
}

/// Runs the command.
pub fn run(args: SimArgs) -> Result<()> {
    match args.scenario {
        Scenario::Placement(a) => {
            let cfg = a.config()?;
            let started = Instant::now();
            let pb = bar(2 * a.seeds as u64);
            let report = placement::run(&cfg, a.seed, a.seeds, threads(&a.out), &|| pb.inc(1))?;
            pb.finish_and_clear();
            if a.out.json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else if a.out.csv {
                print!("{}", report.csv().csv());
            } else {
                let t = &cfg.topology;
                println!(
                    "# shoal sim placement: {} nodes ({} per rack, {} racks per row, {} rows), {} seeds from {}\n",
                    t.nodes,
                    t.nodes_per_rack,
                    t.racks_per_row,
                    t.rows(),
                    a.seeds,
                    a.seed
                );
                println!(
                    "{} files x {} stripes, Zipf {}, {} requests per node; LRU {} stripes per node; r = {}, V = {}, b = {}, eps = {}{}{}\n",
                    cfg.workload.files,
                    cfg.workload.stripes,
                    cfg.workload.alpha,
                    cfg.workload.requests_per_node,
                    cfg.capacity(),
                    cfg.replicas,
                    cfg.v,
                    shoal_placement::fan_base(t.nodes),
                    cfg.eps_value().map_or("1/b".into(), |e| format!("{e:.4}")),
                    cfg.pinning
                        .map_or(String::new(), |p| format!("; pinned replicas: {p:?}")),
                    if cfg.eager_push { "; eager push" } else { "" },
                );
                print!("{}", report.table().markdown());
                println!(
                    "\nmean [p5, p95] across seeds; PNS benefit is (uniform - PNS) / uniform per seed."
                );
            }
            eprintln!("finished in {:.1} s", started.elapsed().as_secs_f64());
            Ok(())
        }
        Scenario::Rollout(a) => {
            let cfg = a.config()?;
            let systems: Vec<System> = a
                .systems
                .iter()
                .map(|s| match s {
                    SystemArg::Shoal => System::Shoal,
                    SystemArg::Direct => System::Direct,
                    SystemArg::Flat => System::Flat,
                    SystemArg::Dht => System::Dht,
                })
                .collect();
            let started = Instant::now();
            let pb = bar(systems.len() as u64);
            let report = rollout::run(&cfg, &systems, a.seed, threads(&a.out), &|| pb.inc(1))?;
            pb.finish_and_clear();
            if a.out.json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else if a.out.csv {
                print!("{}", report.table().csv());
            } else {
                let (t, n) = (&cfg.topology, &cfg.network);
                println!(
                    "# shoal sim rollout: {:.1} GiB in {} MiB stripes to {} nodes at once, cold (seed {})\n",
                    cfg.object_bytes as f64 / f64::from(1u32 << 30),
                    cfg.stripe_bytes >> 20,
                    t.nodes,
                    a.seed
                );
                println!(
                    "{} nodes per rack, {} racks per row, {} rows; NICs {} Gbit/s, rack uplinks {}:1, row uplinks {}:1, origin {} Gbit/s; {} ms per hop to first byte; read-ahead {} stripes; lower bound {:.2} s\n",
                    t.nodes_per_rack,
                    t.racks_per_row,
                    t.rows(),
                    n.nic_gbps,
                    n.rack_oversub,
                    n.row_oversub,
                    n.origin_gbps,
                    n.hop_latency_ms,
                    cfg.readahead,
                    report.lower_bound_s
                );
                print!("{}", report.table().markdown());
            }
            eprintln!("finished in {:.1} s", started.elapsed().as_secs_f64());
            Ok(())
        }
    }
}
