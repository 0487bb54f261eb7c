//! `shoal sim scale-down`: a warm fleet loses a few nodes without warning
//! (an autoscaler removing them), and new nodes join over the next
//! minutes and pull the object the fleet already holds. shoal against
//! the DHT-TTL baseline (and direct, for scale), as a timeline.

use crate::figure::{Axis, Figure};
use crate::rng::{self, below};
use crate::table::Table;
use crate::timed::faults::Plan;
use crate::timed::{Outcome, System, Timed, run};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use shoal_placement::PlacementError;

/// The scenario's shape.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ScaleDown {
    /// The fleet and its network; `topology.nodes` is set from the
    /// counts below.
    pub timed: Timed,
    /// Warm nodes holding the object at time zero.
    pub warm: usize,
    /// Of those, how many vanish at time zero.
    pub vanish: usize,
    /// New nodes that join and pull.
    pub joiners: usize,
    /// Seconds between joins (the first joins at time zero).
    pub every_s: f64,
}

impl ScaleDown {
    /// 8 warm nodes, 3 vanish, 24 join 5 s apart, each pulling 1 GiB.
    pub fn new() -> ScaleDown {
        let mut timed = Timed::new(8 + 24);
        timed.object_bytes = 1 << 30;
        timed.topology.nodes_per_rack = 4;
        timed.topology.racks_per_row = 4;
        ScaleDown {
            timed,
            warm: 8,
            vanish: 3,
            joiners: 24,
            every_s: 5.0,
        }
    }

    fn plan(&self, seed: u64) -> Plan {
        let mut rng = ChaCha8Rng::seed_from_u64(rng::stream(seed, 6));
        let mut vanish = Vec::new();
        while vanish.len() < self.vanish.min(self.warm) {
            let v = below(&mut rng, self.warm) as u32;
            if !vanish.contains(&v) {
                vanish.push(v);
            }
        }
        Plan {
            members: self.warm,
            warm: self.warm,
            leaves: vanish.into_iter().map(|v| (v, 0.0)).collect(),
            clients: (0..self.joiners)
                .map(|j| ((self.warm + j) as u32, j as f64 * self.every_s))
                .collect(),
        }
    }
}

impl Default for ScaleDown {
    fn default() -> Self {
        ScaleDown::new()
    }
}

/// The result: one outcome per system, in the order asked.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// What was simulated.
    pub config: ScaleDown,
    /// The seed.
    pub seed: u64,
    /// The systems.
    pub systems: Vec<System>,
    /// Their outcomes.
    pub outcomes: Vec<Outcome>,
}

/// Runs the scenario for `systems`.
pub fn run_all(
    cfg: &ScaleDown,
    systems: &[System],
    seed: u64,
    threads: usize,
    progress: &(dyn Fn() + Sync),
) -> Result<Report, PlacementError> {
    let mut cfg = cfg.clone();
    cfg.timed.topology.nodes = cfg.warm + cfg.joiners;
    let plan = cfg.plan(seed);
    let outcomes = crate::par::map(systems, threads, progress, |&s| {
        run(&cfg.timed, &plan, s, seed)
    })
    .into_iter()
    .collect::<Result<Vec<_>, _>>()?;
    Ok(Report {
        config: cfg,
        seed,
        systems: systems.to_vec(),
        outcomes,
    })
}

fn secs(s: f64) -> String {
    if s.is_finite() {
        format!("{s:.2} s")
    } else {
        "not done".into()
    }
}

impl Report {
    /// The whole report for people: the setting, the summary, the
    /// timeline.
    pub fn text(&self) -> String {
        let c = &self.config;
        let f = &c.timed.failures;
        format!(
            "# shoal sim scale-down: {} warm nodes, {} vanish at 0 s, {} join {} s apart and pull {:.1} GiB (seed {})\n\n\
             shoal: {} ms connect timeout per vanished peer (then its breaker is open), detection after {}-{} s; DHT: {} s dial timeout per dead provider, records kept {} s\n\n{}\n{}",
            c.warm,
            c.vanish,
            c.joiners,
            c.every_s,
            c.timed.object_bytes as f64 / f64::from(1u32 << 30),
            self.seed,
            f.connect_timeout_ms,
            f.detect_s.0,
            f.detect_s.1,
            f.dht_dial_timeout_s,
            f.dht_ttl_s,
            self.summary().markdown(),
            self.timeline().markdown(),
        )
    }

    /// Each joiner's pull time against when it joined, one line per
    /// system.
    pub fn figure(&self) -> Figure {
        let c = &self.config;
        let mut f = Figure::new(
            format!(
                "{} of {} warm nodes vanish at 0 s; new nodes join and pull",
                c.vanish, c.warm
            ),
            Axis::linear("when the node joined (s)"),
            Axis::log("its pull time (s)"),
        );
        for (s, o) in self.systems.iter().zip(&self.outcomes) {
            let pts = (0..c.joiners)
                .map(|j| {
                    let n = c.warm + j;
                    (j as f64 * c.every_s, o.finish_s[n] - o.start_s[n])
                })
                .collect();
            f.line(format!("{s:?}").to_lowercase(), pts);
        }
        f
    }

    /// One row per joining node: when it joined, and how long its pull
    /// took under each system.
    pub fn timeline(&self) -> Table {
        let mut cols = vec!["node joins at".to_owned()];
        cols.extend(
            self.systems
                .iter()
                .map(|s| format!("{s:?} pull").to_lowercase()),
        );
        let mut t = Table::new(cols);
        let c = &self.config;
        for j in 0..c.joiners {
            let node = c.warm + j;
            let start = j as f64 * c.every_s;
            let mut row = vec![format!("{start:.0} s")];
            row.extend(
                self.outcomes
                    .iter()
                    .map(|o| secs(o.finish_s[node] - o.start_s[node])),
            );
            t.row(row);
        }
        t
    }

    /// One row per system: pull times and what dead peers cost.
    pub fn summary(&self) -> Table {
        let mut t = Table::new([
            "system",
            "mean pull",
            "slowest pull",
            "attempts on vanished nodes",
            "time lost to them",
            "origin GiB",
        ]);
        let c = &self.config;
        for (s, o) in self.systems.iter().zip(&self.outcomes) {
            let pulls: Vec<f64> = (c.warm..c.warm + c.joiners)
                .map(|n| o.finish_s[n] - o.start_s[n])
                .collect();
            let mean = pulls.iter().sum::<f64>() / pulls.len().max(1) as f64;
            let max = pulls.iter().copied().fold(0.0, f64::max);
            t.row([
                format!("{s:?}").to_lowercase(),
                secs(mean),
                secs(max),
                o.stale_attempts.to_string(),
                secs(o.stale_wait_s),
                format!("{:.1}", o.origin_bytes / f64::from(1u32 << 30)),
            ]);
        }
        t
    }
}
