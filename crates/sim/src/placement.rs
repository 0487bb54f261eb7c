//! `shoal sim placement`: the counting model over many seeds, each seed
//! run twice (nearest-tier routing and uniform choice) with the same
//! placement, demand and coins, summarised as `mean [p5, p95]` with the
//! paired benefit of nearest-tier routing.

use crate::counting::{self, Counting, Metrics, Rule, Run};
use crate::stats::{Summary, paired_benefit};
use crate::table::Table;
use serde::Serialize;
use shoal_placement::PlacementError;

/// One reported figure: its name, how to print it, and how to read it
/// from a run.
struct Figure {
    name: &'static str,
    percent: bool,
    get: fn(&Metrics) -> f64,
}

const FIGURES: &[Figure] = &[
    Figure {
        name: "client hops",
        percent: false,
        get: |m| m.client_hops,
    },
    Figure {
        name: "system hops",
        percent: false,
        get: |m| m.system_hops,
    },
    Figure {
        name: "congestion factor",
        percent: false,
        get: |m| m.congestion,
    },
    Figure {
        name: "cross-rack share",
        percent: true,
        get: |m| m.cross_rack,
    },
    Figure {
        name: "cross-row share",
        percent: true,
        get: |m| m.cross_row,
    },
    Figure {
        name: "copies per stripe",
        percent: false,
        get: |m| m.copies,
    },
    Figure {
        name: "copies per hot stripe",
        percent: false,
        get: |m| m.hot_copies,
    },
    Figure {
        name: "hot stripe copies on hops",
        percent: false,
        get: |m| m.hot_mesh_copies,
    },
    Figure {
        name: "serve skew p99/mean",
        percent: false,
        get: |m| m.skew_p99,
    },
    Figure {
        name: "serve skew max/mean",
        percent: false,
        get: |m| m.skew_max,
    },
    Figure {
        name: "origin fetches per stripe",
        percent: false,
        get: |m| m.origin_per_stripe,
    },
    Figure {
        name: "local hits",
        percent: true,
        get: |m| m.local_hits,
    },
];

/// One figure across seeds.
#[derive(Clone, Debug, Serialize)]
pub struct Row {
    /// The figure.
    pub metric: &'static str,
    /// Under nearest-tier routing.
    pub pns: Summary,
    /// Under uniform choice.
    pub uniform: Summary,
    /// Per seed `(uniform - pns) / uniform`.
    pub benefit: Summary,
    /// Whether the benefit's `[p5, p95]` contains zero.
    pub unclear: bool,
}

/// The whole result.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// What was simulated.
    pub config: Counting,
    /// The seeds, in order.
    pub seeds: Vec<u64>,
    /// Summaries.
    pub rows: Vec<Row>,
    /// Every run under nearest-tier routing, by seed.
    pub pns: Vec<Run>,
    /// Every run under uniform choice, by seed.
    pub uniform: Vec<Run>,
}

/// Runs `seeds` seeds starting at `first_seed` on `threads` threads,
/// calling `progress` after each of the `2 * seeds` runs.
pub fn run(
    cfg: &Counting,
    first_seed: u64,
    seeds: usize,
    threads: usize,
    progress: &(dyn Fn() + Sync),
) -> Result<Report, PlacementError> {
    let jobs: Vec<(u64, Rule)> = (0..seeds as u64)
        .flat_map(|i| [(first_seed + i, Rule::Pns), (first_seed + i, Rule::Uniform)])
        .collect();
    let mut runs = crate::par::map(&jobs, threads, progress, |&(seed, rule)| {
        counting::run(cfg, seed, rule)
    })
    .into_iter();
    let (mut pns, mut uniform) = (Vec::new(), Vec::new());
    while let (Some(p), Some(u)) = (runs.next(), runs.next()) {
        pns.push(p?);
        uniform.push(u?);
    }
    let rows = FIGURES
        .iter()
        .map(|f| {
            let p: Vec<f64> = pns.iter().map(|r| (f.get)(&r.metrics)).collect();
            let u: Vec<f64> = uniform.iter().map(|r| (f.get)(&r.metrics)).collect();
            let benefit = Summary::of(&paired_benefit(&p, &u));
            Row {
                metric: f.name,
                pns: Summary::of(&p),
                uniform: Summary::of(&u),
                benefit,
                unclear: benefit.crosses_zero(),
            }
        })
        .collect();
    Ok(Report {
        config: cfg.clone(),
        seeds: (first_seed..first_seed + seeds as u64).collect(),
        rows,
        pns,
        uniform,
    })
}

fn fmt(v: f64, percent: bool) -> String {
    if percent {
        format!("{:.1}%", v * 100.0)
    } else if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.3}")
    }
}

fn cell(s: &Summary, percent: bool) -> String {
    format!(
        "{} [{}, {}]",
        fmt(s.mean, percent),
        fmt(s.p5, percent),
        fmt(s.p95, percent)
    )
}

impl Report {
    /// Each seed's congestion factor under nearest-tier routing and under
    /// uniform choice.
    pub fn figure(&self) -> crate::figure::Figure {
        use crate::figure::{Axis, Figure};
        let mut f = Figure::new(
            format!(
                "{} nodes: congestion factor per seed",
                self.config.topology.nodes
            ),
            Axis::linear("seed"),
            Axis::linear("oversubscription-weighted hops per hop"),
        );
        for (name, runs) in [
            ("nearest tier (PNS)", &self.pns),
            ("uniform", &self.uniform),
        ] {
            let pts = self
                .seeds
                .iter()
                .zip(runs.iter())
                .map(|(&s, r)| (s as f64, r.metrics.congestion))
                .collect();
            f.line(name, pts);
        }
        f
    }

    /// The summary table: one row per figure.
    pub fn table(&self) -> Table {
        let mut t = Table::new(["figure", "nearest tier (PNS)", "uniform", "PNS benefit"]);
        for (row, f) in self.rows.iter().zip(FIGURES) {
            let flag = if row.unclear { " (crosses 0)" } else { "" };
            t.row([
                row.metric.to_owned(),
                cell(&row.pns, f.percent),
                cell(&row.uniform, f.percent),
                format!("{}{flag}", cell(&row.benefit, true)),
            ]);
        }
        t
    }

    /// The whole report for people: what was run, then the table.
    pub fn text(&self) -> String {
        let (cfg, t) = (&self.config, &self.config.topology);
        let first = self.seeds.first().copied().unwrap_or(0);
        format!(
            "# shoal sim placement: {} nodes ({} per rack, {} racks per row, {} rows), {} seeds from {first}\n\n\
             {} files x {} stripes, Zipf {}, {} requests per node; LRU {} stripes per node; r = {}, V = {}, b = {}, eps = {}{}{}\n\n\
             {}\nmean [p5, p95] across seeds; PNS benefit is (uniform - PNS) / uniform per seed.\n",
            t.nodes,
            t.nodes_per_rack,
            t.racks_per_row,
            t.rows(),
            self.seeds.len(),
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
            self.table().markdown(),
        )
    }

    /// The table as CSV, one line per figure and rule.
    pub fn csv(&self) -> Table {
        let mut t = Table::new(["figure", "rule", "mean", "p5", "p95"]);
        for row in &self.rows {
            for (rule, s) in [
                ("pns", row.pns),
                ("uniform", row.uniform),
                ("benefit", row.benefit),
            ] {
                t.row([
                    row.metric.to_owned(),
                    rule.to_owned(),
                    s.mean.to_string(),
                    s.p5.to_string(),
                    s.p95.to_string(),
                ]);
            }
        }
        t
    }
}
