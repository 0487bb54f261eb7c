//! `shoal sim churn`: a cold rollout while nodes leave (unannounced) and
//! join at a steady rate. Leaves and joins are Poisson arrivals over the
//! churn period; a leaving node is drawn from the nodes alive then; a
//! joining node starts its own pull when it joins. Reported per rate and
//! system: pull times of the nodes that stayed, stale finger hits,
//! transfers cut off mid-stripe, extra hops taken because of churn, the
//! mesh hit ratio inside churn windows against the whole run's, and
//! origin amplification.

use crate::figure::{Axis, Figure, lines_by};
use crate::rng::{self, below};
use crate::rollout::lower_bound;
use crate::stats::percentile;
use crate::table::{Table, secs};
use crate::timed::faults::Plan;
use crate::timed::{Outcome, System, Timed, run as run_plan};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use shoal_placement::PlacementError;

/// The scenario's shape.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Churn {
    /// The rollout; `topology.nodes` is the fleet at time zero (joiners
    /// are added after it).
    pub timed: Timed,
    /// Churn rates to run: the share of the starting fleet that leaves per
    /// minute; as many nodes join.
    pub rates: Vec<f64>,
    /// Leaves and joins happen during `[0, period_s)`.
    pub period_s: f64,
}

impl Churn {
    /// The rollout's defaults on `nodes` nodes, at 0, 1, 5 and 20% of the
    /// fleet per minute over the first minute.
    pub fn new(nodes: usize) -> Churn {
        Churn {
            timed: Timed::new(nodes),
            rates: vec![0.0, 0.01, 0.05, 0.2],
            period_s: 60.0,
        }
    }

    /// Who leaves and joins when, at `rate`, for `seed`.
    pub fn plan(&self, rate: f64, seed: u64) -> Plan {
        let nodes = self.timed.topology.nodes;
        let per_s = rate * nodes as f64 / 60.0;
        let mut rng = ChaCha8Rng::seed_from_u64(rng::stream(seed, 9));
        let arrivals = |rng: &mut ChaCha8Rng| {
            let mut out = Vec::new();
            if per_s <= 0.0 {
                return out;
            }
            let mut t = 0.0;
            loop {
                t += -(1.0 - rng::unit(rng)).ln() / per_s;
                if t >= self.period_s {
                    return out;
                }
                out.push(t);
            }
        };
        let joins = arrivals(&mut rng);
        let leave_times = arrivals(&mut rng);
        let mut alive: Vec<u32> = (0..nodes as u32).collect();
        let mut clients: Vec<(u32, f64)> = alive.iter().map(|&n| (n, 0.0)).collect();
        let mut leaves = Vec::new();
        let (mut j, mut l) = (0, 0);
        while l < leave_times.len() {
            if j < joins.len() && joins[j] <= leave_times[l] {
                let node = (nodes + j) as u32;
                alive.push(node);
                clients.push((node, joins[j]));
                j += 1;
            } else {
                if !alive.is_empty() {
                    let v = alive.swap_remove(below(&mut rng, alive.len()));
                    leaves.push((v, leave_times[l]));
                }
                l += 1;
            }
        }
        clients.extend(
            joins[j..]
                .iter()
                .enumerate()
                .map(|(k, &t)| ((nodes + j + k) as u32, t)),
        );
        Plan {
            members: nodes,
            warm: 0,
            leaves,
            clients,
        }
    }
}

/// One (rate, system) run.
#[derive(Clone, Debug, Serialize)]
pub struct Row {
    /// Share of the fleet leaving (and joining) per minute.
    pub rate: f64,
    /// The system.
    pub system: System,
    /// Nodes that left.
    pub leaves: usize,
    /// Nodes that joined.
    pub joins: usize,
    /// The outcome.
    pub outcome: Outcome,
}

/// The result.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// What was simulated.
    pub config: Churn,
    /// The seed.
    pub seed: u64,
    /// The rollout's lower bound, seconds.
    pub lower_bound_s: f64,
    /// One row per rate and system.
    pub rows: Vec<Row>,
}

/// Runs `systems` at every rate of `cfg`.
pub fn run(
    cfg: &Churn,
    systems: &[System],
    seed: u64,
    threads: usize,
    progress: &(dyn Fn() + Sync),
) -> Result<Report, PlacementError> {
    let jobs: Vec<(f64, System)> = cfg
        .rates
        .iter()
        .flat_map(|&r| systems.iter().map(move |&s| (r, s)))
        .collect();
    let outcomes = crate::par::map(&jobs, threads, progress, |&(rate, system)| {
        let plan = cfg.plan(rate, seed);
        let mut timed = cfg.timed.clone();
        timed.topology.nodes = plan.clients.len();
        let o = run_plan(&timed, &plan, system, seed)?;
        Ok::<_, PlacementError>((plan, o))
    });
    let mut rows = Vec::new();
    for (&(rate, system), o) in jobs.iter().zip(outcomes) {
        let (plan, outcome) = o?;
        rows.push(Row {
            rate,
            system,
            leaves: plan.leaves.len(),
            joins: plan.clients.len() - plan.members,
            outcome,
        });
    }
    Ok(Report {
        config: cfg.clone(),
        seed,
        lower_bound_s: lower_bound(&cfg.timed),
        rows,
    })
}

/// Pull times of the nodes that pulled and stayed, sorted.
pub fn stayers_pulls(o: &Outcome) -> Vec<f64> {
    let mut f: Vec<f64> = (0..o.finish_s.len())
        .filter(|&n| o.left_s[n].is_infinite())
        .map(|n| o.finish_s[n] - o.start_s[n])
        .collect();
    f.sort_by(f64::total_cmp);
    f
}

fn share(a: u64, b: u64) -> String {
    if b == 0 {
        "-".into()
    } else {
        format!("{:.2}%", 100.0 * a as f64 / b as f64)
    }
}

impl Report {
    /// One row per rate and system.
    pub fn table(&self) -> Table {
        let mut t = Table::new([
            "churn / min",
            "system",
            "left / joined",
            "pull p50",
            "pull p99",
            "amplification",
            "stale finger hits",
            "transfers cut, resumed",
            "extra hops",
            "hits in churn windows",
            "hits overall",
        ]);
        for r in &self.rows {
            let o = &r.outcome;
            let f = stayers_pulls(o);
            t.row([
                format!("{:.0}%", 100.0 * r.rate),
                r.system.name().to_owned(),
                format!("{} / {}", r.leaves, r.joins),
                secs(percentile(&f, 50.0)),
                secs(percentile(&f, 99.0)),
                format!(
                    "{:.2}",
                    o.origin_bytes / self.config.timed.object_bytes as f64
                ),
                o.stale_attempts.to_string(),
                format!("{}, {}", o.broken, o.resumes),
                (o.stand_ins + o.peeks + o.resumes + o.relays).to_string(),
                share(o.window_hits, o.window_pulls),
                share(o.mesh_hits, o.pulls),
            ]);
        }
        t
    }

    /// The p99 pull time against the churn rate, one line per system.
    pub fn figure(&self) -> Figure {
        let mut f = Figure::new(
            format!(
                "Rollout to {} nodes while nodes leave and join",
                self.config.timed.topology.nodes
            ),
            Axis::linear("nodes leaving (and joining) per minute (% of the fleet)"),
            Axis::log("pull time p99 of the nodes that stayed (s)"),
        );
        let lines = lines_by(
            &self.rows,
            |r| r.system,
            |r| (100.0 * r.rate, percentile(&stayers_pulls(&r.outcome), 99.0)),
        );
        for (s, pts) in lines {
            f.line(format!("{s:?}").to_lowercase(), pts);
        }
        f
    }

    /// The whole report for people.
    pub fn text(&self) -> String {
        let c = &self.config;
        let f = &c.timed.failures;
        format!(
            "# shoal sim churn: {:.1} GiB in {} MiB stripes to {} nodes at once, cold, while nodes leave unannounced and join during the first {} s (seed {})\n\n\
             Leaves and joins are Poisson arrivals at the rate shown (a share of the starting fleet per minute each); joiners pull from when they join. \
             A receiver whose sender vanished resumes elsewhere after {} s of silence; detection after {}-{} s; shoal pays {} ms per vanished peer and client, the DHT {} s per dead provider. \
             Churn windows run from each leave or join to {} s after it. Lower bound {:.2} s.\n\n{}",
            c.timed.object_bytes as f64 / f64::from(1u32 << 30),
            c.timed.stripe_bytes >> 20,
            c.timed.topology.nodes,
            c.period_s,
            self.seed,
            f.stall_s,
            f.detect_s.0,
            f.detect_s.1,
            f.connect_timeout_ms,
            f.dht_dial_timeout_s,
            f.detect_s.1,
            self.lower_bound_s,
            self.table().markdown(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plan_only_removes_nodes_that_are_alive_and_numbers_joiners_in_order() {
        let mut c = Churn::new(1000);
        c.period_s = 60.0;
        let p = c.plan(0.1, 3);
        let joins = p.clients.len() - 1000;
        // About 100 of each, Poisson.
        assert!((60..140).contains(&joins), "{joins}");
        assert!((60..140).contains(&p.leaves.len()), "{}", p.leaves.len());
        let start: std::collections::HashMap<u32, f64> = p.clients.iter().copied().collect();
        let mut gone = std::collections::HashSet::new();
        let mut last = 0.0;
        for &(v, t) in &p.leaves {
            assert!(t >= last && t < c.period_s);
            last = t;
            assert!(start[&v] <= t, "node {v} left before it joined");
            assert!(gone.insert(v), "node {v} left twice");
        }
        let late: Vec<f64> = p.clients[1000..].iter().map(|c| c.1).collect();
        assert!(late.windows(2).all(|w| w[0] <= w[1]));
        for (k, &(n, _)) in p.clients[1000..].iter().enumerate() {
            assert_eq!(n as usize, 1000 + k);
        }
        assert_eq!(c.plan(0.1, 3), p);
        assert!(c.plan(0.0, 3).leaves.is_empty());
    }
}
