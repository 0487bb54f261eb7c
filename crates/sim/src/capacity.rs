//! `shoal sim capacity`: stores of a fixed share of each node's disk
//! against working sets of large models, with small and large stripes,
//! in the counting model. Does the fleet keep what it is asked for, or
//! does the origin see the same stripes again?

use crate::counting::{self, Counting, Rule, Run};
use crate::figure::{Axis, Figure};
use crate::table::Table;
use serde::Serialize;
use shoal_placement::PlacementError;

/// The scenario's shape.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Capacity {
    /// Nodes.
    pub nodes: usize,
    /// Each node's disk, bytes (default 1 TB).
    pub disk_bytes: u64,
    /// Share of it the store may use (default 0.10).
    pub share: f64,
    /// One model's size, bytes (default 140 GB).
    pub model_bytes: u64,
    /// Working sets to try: how many models are in demand.
    pub models: Vec<usize>,
    /// Stripe sizes to try, bytes (default 64 MiB and 1 GiB).
    pub stripe_bytes: Vec<u64>,
    /// Model requests per node.
    pub requests_per_node: f64,
    /// Zipf exponent of model popularity.
    pub alpha: f64,
}

impl Default for Capacity {
    fn default() -> Self {
        Capacity {
            nodes: 1000,
            disk_bytes: 1_000_000_000_000,
            share: 0.10,
            model_bytes: 140_000_000_000,
            models: vec![2, 4, 8],
            stripe_bytes: vec![64 << 20, 1 << 30],
            requests_per_node: 1.0,
            alpha: 1.0,
        }
    }
}

/// One working set and stripe size.
#[derive(Clone, Debug, Serialize)]
pub struct Row {
    /// Models in demand.
    pub models: usize,
    /// Stripe size, bytes.
    pub stripe_bytes: u64,
    /// Stripes each node's store holds.
    pub capacity_stripes: usize,
    /// The run.
    pub run: Run,
    /// Origin bytes over the bytes of distinct stripes requested.
    pub origin_load: f64,
    /// Share of pulls that did not go to the origin.
    pub hit_ratio: f64,
}

/// The result.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// What was simulated.
    pub config: Capacity,
    /// The seed.
    pub seed: u64,
    /// One row per (models, stripe size).
    pub rows: Vec<Row>,
}

impl Capacity {
    fn counting(&self, models: usize, stripe: u64) -> Counting {
        let mut c = Counting::new(self.nodes);
        c.workload.files = models;
        c.workload.stripes = self.model_bytes.div_ceil(stripe) as usize;
        c.workload.alpha = self.alpha;
        c.workload.requests_per_node = self.requests_per_node;
        c.capacity = Some(((self.disk_bytes as f64 * self.share) / stripe as f64).floor() as usize);
        c
    }
}

/// Runs every combination, on `threads` threads.
pub fn run(
    cfg: &Capacity,
    seed: u64,
    threads: usize,
    progress: &(dyn Fn() + Sync),
) -> Result<Report, PlacementError> {
    let jobs: Vec<(usize, u64)> = cfg
        .models
        .iter()
        .flat_map(|&m| cfg.stripe_bytes.iter().map(move |&s| (m, s)))
        .collect();
    let runs = crate::par::map(&jobs, threads, progress, |&(m, s)| {
        counting::run(&cfg.counting(m, s), seed, Rule::Pns)
    });
    let mut rows = Vec::new();
    for (&(models, stripe_bytes), r) in jobs.iter().zip(runs) {
        let run = r?;
        let c = &run.counts;
        let ratio = |a: u64, b: u64| if b > 0 { a as f64 / b as f64 } else { 0.0 };
        rows.push(Row {
            models,
            stripe_bytes,
            capacity_stripes: cfg.counting(models, stripe_bytes).capacity(),
            origin_load: ratio(c.origin_fetches, c.stripes_requested),
            hit_ratio: 1.0 - ratio(c.origin_fetches, c.pulls),
            run,
        });
    }
    Ok(Report {
        config: cfg.clone(),
        seed,
        rows,
    })
}

fn gb(b: f64) -> String {
    format!("{:.0} GB", b / 1e9)
}

fn stripe_name(b: u64) -> String {
    if b >= 1 << 30 {
        format!("{} GiB", b >> 30)
    } else {
        format!("{} MiB", b >> 20)
    }
}

impl Report {
    /// Origin load against the working set, one line per stripe size.
    pub fn figure(&self) -> Figure {
        let c = &self.config;
        let mut f = Figure::new(
            format!(
                "{} nodes, stores of {} each",
                c.nodes,
                gb(c.disk_bytes as f64 * c.share)
            ),
            Axis::linear("working set (GB)"),
            Axis::linear("origin fetches per distinct stripe"),
        );
        for &s in &c.stripe_bytes {
            let pts = self
                .rows
                .iter()
                .filter(|r| r.stripe_bytes == s)
                .map(|r| {
                    (
                        (r.models as u64 * c.model_bytes) as f64 / 1e9,
                        r.origin_load,
                    )
                })
                .collect();
            f.line(format!("{} stripes", stripe_name(s)), pts);
        }
        f
    }

    /// One row per working set and stripe size.
    pub fn table(&self) -> Table {
        let mut t = Table::new([
            "models in demand",
            "working set",
            "stripe",
            "store per node",
            "hit ratio",
            "origin load",
            "local hits",
            "client hops",
        ]);
        let c = &self.config;
        for r in &self.rows {
            let stripe = stripe_name(r.stripe_bytes);
            t.row([
                r.models.to_string(),
                gb((r.models as u64 * c.model_bytes) as f64),
                stripe,
                format!(
                    "{} ({} stripes)",
                    gb(c.disk_bytes as f64 * c.share),
                    r.capacity_stripes
                ),
                format!("{:.1}%", 100.0 * r.hit_ratio),
                format!("{:.2}x", r.origin_load),
                format!("{:.1}%", 100.0 * r.run.metrics.local_hits),
                format!("{:.2}", r.run.metrics.client_hops),
            ]);
        }
        t
    }

    /// The whole report for people.
    pub fn text(&self) -> String {
        let c = &self.config;
        format!(
            "# shoal sim capacity: {} nodes, stores of {:.0}% of a {} disk, models of {}, Zipf {}, {} requests per node (seed {})\n\n{}\n\
             hit ratio: pulls not sent to the origin; origin load: origin fetches per distinct stripe requested (1.00 = each once).\n",
            c.nodes,
            100.0 * c.share,
            gb(c.disk_bytes as f64),
            gb(c.model_bytes as f64),
            c.alpha,
            c.requests_per_node,
            self.seed,
            self.table().markdown(),
        )
    }
}
