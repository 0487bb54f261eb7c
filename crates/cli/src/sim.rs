//! `shoal sim`: the simulator's scenarios on the command line. The
//! models live in `shoal-sim`; this only parses options, shows progress
//! and prints.

use anyhow::{Result, bail};
use clap::{Args, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use shoal_placement::PlacementError;
use shoal_sim::capacity::{self, Capacity};
use shoal_sim::counting::{Counting, Eps, Pinning};
use shoal_sim::figure::Figure;
use shoal_sim::scaledown::{self, ScaleDown};
use shoal_sim::timed::Timed;
use shoal_sim::{churn, partition, placement, rollout};
use std::path::PathBuf;
use std::time::Instant;
use timed::{ChurnArgs, PartitionArgs, RolloutArgs, ScaleDownArgs, systems};

mod plot;
mod timed;

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
    /// The timed model: a cold rollout while nodes leave unannounced and
    /// join at steady rates; stale hits, cut transfers, extra hops, hit
    /// ratio in churn windows, origin amplification.
    Churn(Box<ChurnArgs>),
    /// The timed model: nodes of a warm fleet vanish without warning while
    /// new nodes join and pull; shoal against the DHT-TTL baseline.
    ScaleDown(Box<ScaleDownArgs>),
    /// The counting model with stores of a share of each disk against
    /// working sets of large models: hit ratio and origin load.
    Capacity(Box<CapacityArgs>),
    /// The timed model: part of the fleet holds an object, the rest pull
    /// it while a share of node pairs cannot reach each other; shoal's
    /// relays against the DHT's dial timeouts.
    Partition(Box<PartitionArgs>),
}

#[derive(Args)]
struct CapacityArgs {
    /// Nodes.
    #[arg(long, default_value_t = 1000)]
    nodes: usize,
    /// Each node's disk.
    #[arg(long, default_value = "1TB")]
    disk: String,
    /// Share of the disk the store may use, percent.
    #[arg(long, default_value_t = 10.0)]
    share: f64,
    /// One model's size.
    #[arg(long, default_value = "140GB")]
    model: String,
    /// Working sets to try: models in demand.
    #[arg(long, value_delimiter = ',', default_values_t = [2, 4, 8])]
    models: Vec<usize>,
    /// Stripe sizes to try.
    #[arg(long, value_delimiter = ',', default_values_t = ["64MiB".to_owned(), "1GiB".to_owned()])]
    stripes: Vec<String>,
    /// Model requests per node.
    #[arg(long, default_value_t = 1.0)]
    requests: f64,
    /// Zipf exponent of model popularity.
    #[arg(long, default_value_t = 1.0)]
    alpha: f64,
    /// The seed.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    #[command(flatten)]
    out: Output,
}

/// How results are printed.
#[derive(Args)]
pub(super) struct Output {
    /// Print JSON (every run, every figure) instead of a table.
    #[arg(long, conflicts_with = "csv")]
    json: bool,
    /// Print CSV instead of a table.
    #[arg(long)]
    csv: bool,
    /// Worker threads (default: all cores).
    #[arg(long)]
    threads: Option<usize>,
    /// Also draw the scenario's main figure into this PNG file.
    #[arg(long, value_name = "FILE.png")]
    plot: Option<PathBuf>,
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

pub(super) fn size(what: &str, s: &str) -> Result<u64> {
    let v = shoal_store::parse_size(s).map_err(|e| anyhow::anyhow!("--{what} {s:?}: {e}"))?;
    if v == 0 {
        bail!("--{what} must be positive");
    }
    Ok(v)
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

/// How a scenario's report is shown: as CSV, as text, as a figure.
struct Views<R> {
    csv: fn(&R) -> String,
    text: fn(&R) -> String,
    figure: fn(&R) -> Figure,
}

/// Runs a scenario with a progress bar over `jobs` runs, then prints its
/// report as JSON, CSV or text, draws its figure if asked, and prints
/// the wall time on stderr.
fn emit<R: Serialize>(
    out: &Output,
    jobs: usize,
    run: impl FnOnce(usize, &(dyn Fn() + Sync)) -> Result<R, PlacementError>,
    views: Views<R>,
) -> Result<()> {
    let Views { csv, text, figure } = views;
    let started = Instant::now();
    let pb = bar(jobs as u64);
    let report = run(threads(out), &|| pb.inc(1))?;
    pb.finish_and_clear();
    if out.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else if out.csv {
        print!("{}", csv(&report));
    } else {
        print!("{}", text(&report));
    }
    if let Some(path) = &out.plot {
        plot::draw(&figure(&report), path)?;
        eprintln!("figure written to {}", path.display());
    }
    eprintln!("finished in {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}

/// Runs the command.
pub fn run(args: SimArgs) -> Result<()> {
    match args.scenario {
        Scenario::Placement(a) => {
            let cfg = a.config()?;
            emit(
                &a.out,
                2 * a.seeds,
                |threads, progress| placement::run(&cfg, a.seed, a.seeds, threads, progress),
                Views {
                    csv: |r: &placement::Report| r.csv().csv(),
                    text: placement::Report::text,
                    figure: placement::Report::figure,
                },
            )
        }
        Scenario::Rollout(a) => {
            let cfg = a.config()?;
            let systems = systems(&a.systems);
            emit(
                &a.out,
                systems.len(),
                |threads, progress| rollout::run(&cfg, &systems, a.seed, threads, progress),
                Views {
                    csv: |r: &rollout::Report| r.table().csv(),
                    text: rollout::Report::text,
                    figure: rollout::Report::figure,
                },
            )
        }
        Scenario::Churn(a) => {
            let cfg = a.config()?;
            let systems = systems(&a.rollout.systems);
            emit(
                &a.rollout.out,
                cfg.rates.len() * systems.len(),
                |threads, progress| churn::run(&cfg, &systems, a.rollout.seed, threads, progress),
                Views {
                    csv: |r: &churn::Report| r.table().csv(),
                    text: churn::Report::text,
                    figure: churn::Report::figure,
                },
            )
        }
        Scenario::ScaleDown(a) => {
            if a.vanish > a.warm || a.warm == 0 || a.joiners == 0 {
                bail!("need --warm > 0, --vanish <= --warm and --joiners > 0");
            }
            let mut cfg = ScaleDown::new();
            cfg.warm = a.warm;
            cfg.vanish = a.vanish;
            cfg.joiners = a.joiners;
            cfg.every_s = a.every.max(0.0);
            cfg.timed.object_bytes = size("object", &a.object)?;
            cfg.timed.stripe_bytes = size("stripe", &a.stripe)?;
            cfg.timed.failures.connect_timeout_ms = a.connect_timeout_ms.max(0.0);
            cfg.timed.failures.dht_dial_timeout_s = a.dht_dial_timeout.max(0.0);
            let systems = systems(&a.systems);
            emit(
                &a.out,
                systems.len(),
                |threads, progress| scaledown::run_all(&cfg, &systems, a.seed, threads, progress),
                Views {
                    csv: |r: &scaledown::Report| r.timeline().csv(),
                    text: scaledown::Report::text,
                    figure: scaledown::Report::figure,
                },
            )
        }
        Scenario::Capacity(a) => {
            if a.nodes < 2 || a.models.is_empty() || a.models.contains(&0) {
                bail!("need --nodes >= 2 and positive --models");
            }
            if !(a.share > 0.0 && a.share <= 100.0) {
                bail!("--share is a percentage above 0");
            }
            let cfg = Capacity {
                nodes: a.nodes,
                disk_bytes: size("disk", &a.disk)?,
                share: a.share / 100.0,
                model_bytes: size("model", &a.model)?,
                models: a.models.clone(),
                stripe_bytes: a
                    .stripes
                    .iter()
                    .map(|s| size("stripes", s))
                    .collect::<Result<_>>()?,
                requests_per_node: a.requests,
                alpha: a.alpha,
            };
            emit(
                &a.out,
                cfg.models.len() * cfg.stripe_bytes.len(),
                |threads, progress| capacity::run(&cfg, a.seed, threads, progress),
                Views {
                    csv: |r: &capacity::Report| r.table().csv(),
                    text: capacity::Report::text,
                    figure: capacity::Report::figure,
                },
            )
        }
        Scenario::Partition(a) => {
            if a.nodes < 2 || a.cuts.iter().any(|c| !(0.0..1.0).contains(c)) {
                bail!("need --nodes >= 2 and --cuts between 0 and 1");
            }
            if !(0.0..100.0).contains(&a.warm) {
                bail!("--warm is a percentage below 100");
            }
            let warm = (a.nodes as f64 * a.warm / 100.0).round() as usize;
            let mut cfg = Timed::new(a.nodes);
            cfg.object_bytes = size("object", &a.object)?;
            let systems = systems(&a.systems);
            emit(
                &a.out,
                a.cuts.len() * systems.len(),
                |threads, progress| {
                    partition::run(&cfg, warm, &a.cuts, &systems, a.seed, threads, progress)
                },
                Views {
                    csv: |r: &partition::Report| r.table().csv(),
                    text: partition::Report::text,
                    figure: partition::Report::figure,
                },
            )
        }
    }
}
