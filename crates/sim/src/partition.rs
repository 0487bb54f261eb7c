//! `shoal sim partition`: a share of the fleet holds an object and the
//! rest pull it at once, while a share of node pairs cannot reach each
//! other although both are alive (non-transitive links). shoal routes around a cut hop through a relay; the DHT
//! baseline loses a dial timeout per unreachable provider.

use crate::figure::{Axis, Figure, lines_by};
use crate::rollout::lower_bound;
use crate::stats::percentile;
use crate::table::Table;
use crate::timed::faults::Plan;
use crate::timed::{Outcome, System, Timed, run as run_plan};
use serde::Serialize;
use shoal_placement::PlacementError;

/// One (cut share, system) run.
#[derive(Clone, Debug, Serialize)]
pub struct Row {
    /// Share of node pairs cut.
    pub cut_share: f64,
    /// The system.
    pub system: System,
    /// The outcome.
    pub outcome: Outcome,
}

/// The result.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// The rollout simulated at each cut share.
    pub config: Timed,
    /// Nodes holding the object at time zero.
    pub warm: usize,
    /// The seed.
    pub seed: u64,
    /// The lower bound, seconds.
    pub lower_bound_s: f64,
    /// One row per cut share and system.
    pub rows: Vec<Row>,
}

/// Runs `systems` at every share in `cuts`; nodes `0..warm` hold the
/// object and the others pull it at once.
#[allow(clippy::too_many_arguments)]
pub fn run(
    cfg: &Timed,
    warm: usize,
    cuts: &[f64],
    systems: &[System],
    seed: u64,
    threads: usize,
    progress: &(dyn Fn() + Sync),
) -> Result<Report, PlacementError> {
    let jobs: Vec<(f64, System)> = cuts
        .iter()
        .flat_map(|&c| systems.iter().map(move |&s| (c, s)))
        .collect();
    let outcomes = crate::par::map(&jobs, threads, progress, |&(cut, system)| {
        let mut c = cfg.clone();
        c.failures.cut_share = cut;
        run_plan(&c, &Plan::partly_warm(c.topology.nodes, warm), system, seed)
    });
    let mut rows = Vec::new();
    for (&(cut_share, system), o) in jobs.iter().zip(outcomes) {
        rows.push(Row {
            cut_share,
            system,
            outcome: o?,
        });
    }
    Ok(Report {
        config: cfg.clone(),
        warm,
        seed,
        lower_bound_s: lower_bound(cfg),
        rows,
    })
}

impl Report {
    /// The pull times of the nodes that pulled, sorted.
    fn pulls(&self, o: &Outcome) -> Vec<f64> {
        let mut f: Vec<f64> = (self.warm..o.finish_s.len())
            .map(|n| o.finish_s[n] - o.start_s[n])
            .collect();
        f.sort_by(f64::total_cmp);
        f
    }

    /// One row per cut share and system.
    pub fn table(&self) -> Table {
        let mut t = Table::new([
            "pairs cut",
            "system",
            "pull p50",
            "pull p99",
            "slowest pull",
            "amplification",
            "attempts on cut links",
            "relayed hops",
            "time lost",
        ]);
        for r in &self.rows {
            let o = &r.outcome;
            let f = self.pulls(o);
            let s = |v: f64| {
                if v.is_finite() {
                    format!("{v:.2} s")
                } else {
                    "not done".into()
                }
            };
            t.row([
                format!("{:.0}%", 100.0 * r.cut_share),
                r.system.name().to_owned(),
                s(percentile(&f, 50.0)),
                s(percentile(&f, 99.0)),
                s(f.last().copied().unwrap_or(0.0)),
                format!("{:.2}", o.origin_bytes / self.config.object_bytes as f64),
                o.cut_attempts.to_string(),
                o.relays.to_string(),
                s(o.stale_wait_s),
            ]);
        }
        t
    }

    /// The p99 pull time against the share of pairs cut, one line per
    /// system.
    pub fn figure(&self) -> Figure {
        let mut f = Figure::new(
            format!(
                "{} of {} nodes pull while node pairs are cut",
                self.config.topology.nodes - self.warm,
                self.config.topology.nodes
            ),
            Axis::linear("node pairs that cannot reach each other (%)"),
            Axis::log("pull time p99 (s)"),
        );
        let lines = lines_by(
            &self.rows,
            |r| r.system,
            |r| {
                (
                    100.0 * r.cut_share,
                    percentile(&self.pulls(&r.outcome), 99.0),
                )
            },
        );
        for (s, pts) in lines {
            f.line(format!("{s:?}").to_lowercase(), pts);
        }
        f
    }

    /// The whole report for people.
    pub fn text(&self) -> String {
        let c = &self.config;
        format!(
            "# shoal sim partition: {:.1} GiB held by {} of {} nodes, pulled by the others at once, with a share of node pairs unable to reach each other (seed {})\n\n\
             shoal: {} ms connect timeout per cut link and client, then a relay through a fallback; DHT: {} s dial timeout per unreachable provider; lower bound {:.2} s\n\n{}",
            c.object_bytes as f64 / f64::from(1u32 << 30),
            self.warm,
            c.topology.nodes,
            self.seed,
            c.failures.connect_timeout_ms,
            c.failures.dht_dial_timeout_s,
            self.lower_bound_s,
            self.table().markdown(),
        )
    }
}
