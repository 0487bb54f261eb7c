//! `shoal sim rollout`: one object to every node at once, cold, under
//! shoal and the baselines on the same fleet, network and seed.

use crate::figure::{Axis, Figure, cdf};
use crate::stats::percentile;
use crate::table::{Table, secs};
use crate::timed::net::bytes_per_s;
use crate::timed::{Outcome, System, Timed, rollout};
use serde::Serialize;
use shoal_placement::PlacementError;

/// One system's figures.
#[derive(Clone, Debug, Serialize)]
pub struct Row {
    /// The system.
    pub system: System,
    /// Median time for a node to have the whole object, seconds.
    pub p50_s: f64,
    /// 99th percentile.
    pub p99_s: f64,
    /// The last node.
    pub max_s: f64,
    /// p99 over the lower bound.
    pub p99_over_bound: f64,
    /// Bytes the origin sent.
    pub origin_bytes: f64,
    /// Origin bytes over the object's size.
    pub amplification: f64,
    /// Share of moved bytes that left a rack.
    pub cross_rack: f64,
    /// Share of moved bytes that left a row.
    pub cross_row: f64,
    /// Share of client pulls found in the mesh rather than started at the
    /// origin.
    pub mesh_hits: f64,
    /// Nodes that did not finish within the limit.
    pub unfinished: usize,
    /// Bytes a node sent to other nodes: the mean over nodes, over the
    /// object's size.
    pub upload_mean: f64,
    /// The busiest node's, over the object's size.
    pub upload_max: f64,
    /// Share of client pulls that went to a rack relay.
    pub relayed: f64,
    /// Share of nodes done over time: `(seconds, percent)`.
    pub done: Vec<(f64, f64)>,
}

/// The result.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// What was simulated.
    pub config: Timed,
    /// The seed.
    pub seed: u64,
    /// `max(object / origin bandwidth, object / NIC)`, seconds.
    pub lower_bound_s: f64,
    /// One row per system.
    pub rows: Vec<Row>,
}

/// The lower bound on any node's completion: the origin must send the
/// object once, and each node must receive it whole.
pub fn lower_bound(cfg: &Timed) -> f64 {
    let b = cfg.object_bytes as f64;
    (b / bytes_per_s(cfg.network.origin_gbps)).max(b / bytes_per_s(cfg.network.nic_gbps))
}

fn row(cfg: &Timed, system: System, o: &Outcome, bound: f64) -> Row {
    let mut f = o.finish_s.clone();
    f.sort_by(f64::total_cmp);
    let p99 = percentile(&f, 99.0);
    let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { 0.0 };
    Row {
        system,
        p50_s: percentile(&f, 50.0),
        p99_s: p99,
        max_s: f.last().copied().unwrap_or(0.0),
        p99_over_bound: ratio(p99, bound),
        origin_bytes: o.origin_bytes,
        amplification: ratio(o.origin_bytes, cfg.object_bytes as f64),
        cross_rack: ratio(o.cross_rack_bytes, o.moved_bytes),
        cross_row: ratio(o.cross_row_bytes, o.moved_bytes),
        mesh_hits: ratio(o.mesh_hits as f64, o.pulls as f64),
        unfinished: f.iter().filter(|t| !t.is_finite()).count(),
        upload_mean: ratio(
            o.sent_bytes.iter().sum::<f64>() / o.sent_bytes.len().max(1) as f64,
            cfg.object_bytes as f64,
        ),
        upload_max: ratio(
            o.sent_bytes.iter().copied().fold(0.0, f64::max),
            cfg.object_bytes as f64,
        ),
        relayed: ratio(o.relayed_pulls as f64, o.pulls as f64),
        done: cdf(&f),
    }
}

/// Runs `systems` on `threads` threads, calling `progress` as each ends.
pub fn run(
    cfg: &Timed,
    systems: &[System],
    seed: u64,
    threads: usize,
    progress: &(dyn Fn() + Sync),
) -> Result<Report, PlacementError> {
    let outcomes = crate::par::map(systems, threads, progress, |&s| rollout(cfg, s, seed));
    let bound = lower_bound(cfg);
    let mut rows = Vec::new();
    for (system, o) in systems.iter().zip(outcomes) {
        rows.push(row(cfg, *system, &o?, bound));
    }
    Ok(Report {
        config: cfg.clone(),
        seed,
        lower_bound_s: bound,
        rows,
    })
}

impl Report {
    /// The whole report for people: the setting, then the table.
    pub fn text(&self) -> String {
        let cfg = &self.config;
        let (t, n) = (&cfg.topology, &cfg.network);
        format!(
            "# shoal sim rollout: {:.1} GiB in {} MiB stripes to {} nodes at once, cold (seed {})\n\n\
             {} nodes per rack, {} racks per row, {} rows; NICs {} Gbit/s, rack uplinks {}:1, row uplinks {}:1, origin {} Gbit/s; {} ms per hop to first byte; read-ahead {} MiB; {}; lower bound {:.2} s\n\n{}",
            cfg.object_bytes as f64 / f64::from(1u32 << 30),
            cfg.stripe_bytes >> 20,
            t.nodes,
            self.seed,
            t.nodes_per_rack,
            t.racks_per_row,
            t.rows(),
            n.nic_gbps,
            n.rack_oversub,
            n.row_oversub,
            n.origin_gbps,
            n.hop_latency_ms,
            cfg.readahead_bytes >> 20,
            match (cfg.relay, cfg.piece_bytes) {
                (crate::timed::Relay::None, _) => "no rack relay".to_owned(),
                (_, 0) => format!("a rack relay per stripe (racks of {}+)", cfg.rack_relay_min),
                (_, p) => format!(
                    "a rack relay per {} MiB piece (racks of {}+)",
                    p >> 20,
                    cfg.rack_relay_min
                ),
            },
            self.lower_bound_s,
            self.table().markdown(),
        )
    }

    /// Nodes done over time, one line per system, and the lower bound.
    pub fn figure(&self) -> Figure {
        let mut f = Figure::new(
            format!(
                "{:.1} GiB to {} nodes, cold",
                self.config.object_bytes as f64 / f64::from(1u32 << 30),
                self.config.topology.nodes
            ),
            Axis::log("seconds since the start"),
            Axis::linear("nodes with the whole object (%)"),
        );
        for r in &self.rows {
            f.line(r.system.name().to_owned(), r.done.clone());
        }
        f.marks.push(("lower bound".into(), self.lower_bound_s));
        f
    }

    /// One row per system.
    pub fn table(&self) -> Table {
        let mut t = Table::new([
            "system",
            "makespan p50",
            "p99",
            "max",
            "p99 / bound",
            "origin GiB",
            "amplification",
            "cross-rack bytes",
            "cross-row bytes",
            "found in mesh",
            "upload mean / max",
        ]);
        for r in &self.rows {
            t.row([
                r.system.name().to_owned(),
                secs(r.p50_s),
                secs(r.p99_s),
                secs(r.max_s),
                format!("{:.2}", r.p99_over_bound),
                format!("{:.1}", r.origin_bytes / f64::from(1u32 << 30)),
                format!("{:.2}", r.amplification),
                format!("{:.1}%", 100.0 * r.cross_rack),
                format!("{:.1}%", 100.0 * r.cross_row),
                format!("{:.1}%", 100.0 * r.mesh_hits),
                format!("{:.2} / {:.1}", r.upload_mean, r.upload_max),
            ]);
        }
        t
    }
}
