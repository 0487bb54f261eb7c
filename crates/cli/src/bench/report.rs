//! What `shoal bench cluster` measured: one row per system, the warm
//! pull, and the lower bound; as a table and as JSON.

use super::cluster::Settings;
use super::scrape::Totals;
use serde::Serialize;

/// One system's rollout.
#[derive(Debug, Serialize)]
pub struct Row {
    /// The system.
    pub system: String,
    /// Each node's time to the whole object, seconds (`None` for a node
    /// killed on purpose).
    pub seconds: Vec<Option<f64>>,
    /// Median over the nodes that finished.
    pub p50_s: f64,
    /// 99th percentile.
    pub p99_s: f64,
    /// The last node.
    pub max_s: f64,
    /// Body bytes the origin served, from its access log.
    pub origin_bytes: u64,
    /// Origin bytes over the object's size.
    pub amplification: f64,
    /// p99 over the lower bound.
    pub p99_over_bound: f64,
    /// What else happened in the run.
    pub note: Option<String>,
    /// What the agents counted during the run (their `shoal_` metrics,
    /// summed over the nodes, after minus before); empty for the
    /// baselines.
    #[serde(skip_serializing_if = "Totals::is_empty")]
    pub agents: Totals,
    /// Bytes each node sent and received on its link during the run, from
    /// the kernel's counters (all traffic: data, headers, gossip);
    /// empty for the baselines. How evenly the nodes share the uploads is
    /// what the node-bound shape measures.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub links: Vec<Link>,
    /// What the origin sent, by stripe and by the node that asked, from
    /// nginx's access log; empty for the baselines.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub origin_by_stripe: Vec<StripeOrigin>,
}

/// The origin bytes one node fetched of one stripe.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct StripeOrigin {
    /// The stripe's index in the object.
    pub stripe: u64,
    /// The node that asked (`n3`), or its address if not a node.
    pub fetcher: String,
    /// Its requests for that stripe.
    pub requests: u32,
    /// Body bytes sent to it for that stripe.
    pub bytes: u64,
}

/// Groups origin GETs (range start, bytes, fetcher) by stripe and fetcher,
/// in stripe order.
pub fn by_stripe(
    gets: impl IntoIterator<Item = (u64, u64, String)>,
    stripe_size: u64,
) -> Vec<StripeOrigin> {
    let mut sums: std::collections::BTreeMap<(u64, String), (u32, u64)> = Default::default();
    for (start, bytes, fetcher) in gets {
        let e = sums
            .entry((start / stripe_size.max(1), fetcher))
            .or_default();
        *e = (e.0 + 1, e.1 + bytes);
    }
    sums.into_iter()
        .map(|((stripe, fetcher), (requests, bytes))| StripeOrigin {
            stripe,
            fetcher,
            requests,
            bytes,
        })
        .collect()
}

/// The stripes the origin sent more than `stripe_size` bytes of, with
/// who fetched them: `stripe 18 (n5 16.0, n3 16.0 MiB)`.
fn repeated(rows: &[StripeOrigin], stripe_size: u64) -> Vec<String> {
    let mut out = Vec::new();
    for chunk in rows.chunk_by(|a, b| a.stripe == b.stripe) {
        let total: u64 = chunk.iter().map(|r| r.bytes).sum();
        if total > stripe_size {
            let who: Vec<String> = chunk
                .iter()
                .map(|r| {
                    format!(
                        "{} {:.1}",
                        r.fetcher,
                        r.bytes as f64 / f64::from(1u32 << 20)
                    )
                })
                .collect();
            out.push(format!(
                "stripe {} ({} MiB)",
                chunk[0].stripe,
                who.join(", ")
            ));
        }
    }
    out
}

/// One node's link during a rollout.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Link {
    /// Bytes sent.
    pub sent: u64,
    /// Bytes received.
    pub received: u64,
}

impl Link {
    /// What moved between two readings of `(sent, received)`.
    pub fn between(before: (u64, u64), after: (u64, u64)) -> Link {
        Link {
            sent: after.0.saturating_sub(before.0),
            received: after.1.saturating_sub(before.1),
        }
    }
}

/// `min / mean / max` of some byte counts, in MiB.
fn spread(bytes: impl Iterator<Item = u64>) -> Option<(f64, f64, f64)> {
    let mib: Vec<f64> = bytes.map(|b| b as f64 / f64::from(1u32 << 20)).collect();
    let n = mib.len() as f64;
    let min = mib.iter().copied().reduce(f64::min)?;
    let max = mib.iter().copied().reduce(f64::max)?;
    Some((min, mib.iter().sum::<f64>() / n, max))
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

impl Row {
    /// Sums up one rollout.
    pub fn new(system: &str, seconds: &[Option<f64>], origin: u64, size: u64, bound: f64) -> Row {
        let mut done: Vec<f64> = seconds.iter().flatten().copied().collect();
        done.sort_by(f64::total_cmp);
        let p99 = percentile(&done, 99.0);
        Row {
            system: system.to_owned(),
            seconds: seconds.to_vec(),
            p50_s: percentile(&done, 50.0),
            p99_s: p99,
            max_s: done.last().copied().unwrap_or(f64::NAN),
            origin_bytes: origin,
            amplification: origin as f64 / size.max(1) as f64,
            p99_over_bound: p99 / bound,
            note: None,
            agents: Totals::new(),
            links: Vec::new(),
            origin_by_stripe: Vec::new(),
        }
    }
}

/// One new node's pull of an object the fleet holds.
#[derive(Debug, Serialize)]
pub struct Warm {
    /// Its time, seconds.
    pub seconds: f64,
    /// Its rate, Mbit/s.
    pub mbit: f64,
    /// That rate over the node link.
    pub share_of_link: f64,
}

impl Warm {
    /// The warm pull of `size` bytes in `seconds` on a `link` Mbit/s link.
    pub fn new(seconds: f64, size: u64, link: f64) -> Warm {
        let mbit = size as f64 * 8.0 / 1e6 / seconds;
        Warm {
            seconds,
            mbit,
            share_of_link: mbit / link,
        }
    }
}

/// The whole run.
#[derive(Debug, Serialize)]
pub struct Report {
    /// What was run.
    #[serde(flatten)]
    pub setup: Settings,
    /// `max(size / origin link, size / node link)`, seconds.
    pub lower_bound_s: f64,
    /// One row per system.
    pub rows: Vec<Row>,
    /// The warm pull, if it ran.
    pub warm: Option<Warm>,
}

impl Report {
    /// Puts a run together.
    pub fn new(s: &Settings, bound: f64, rows: Vec<Row>, warm: Option<Warm>) -> Report {
        Report {
            setup: s.clone(),
            lower_bound_s: bound,
            rows,
            warm,
        }
    }

    /// The table for people.
    pub fn text(&self) -> String {
        let s = &self.setup;
        let uplinks = match s.rack_mbit {
            Some(m) => format!("uplinks {m} Mbit/s"),
            None => "uplinks unshaped".to_owned(),
        };
        let mut out = format!(
            "# shoal bench cluster ({}): {:.0} MiB to {} nodes in {} racks ({uplinks}); node links {} Mbit/s, origin {} Mbit/s, central cache {} Mbit/s; {} stripes\n\n\
             | system | makespan p50 | p99 | max | origin MiB | amplification | p99 / bound |\n| --- | ---: | ---: | ---: | ---: | ---: | ---: |\n",
            s.shape,
            s.size as f64 / f64::from(1u32 << 20),
            s.nodes,
            s.racks,
            s.node_mbit,
            s.origin_mbit,
            s.cache_mbit,
            s.stripe,
        );
        for r in &self.rows {
            out.push_str(&format!(
                "| {} | {:.2} s | {:.2} s | {:.2} s | {:.1} | {:.2} | {:.2} |\n",
                r.system,
                r.p50_s,
                r.p99_s,
                r.max_s,
                r.origin_bytes as f64 / f64::from(1u32 << 20),
                r.amplification,
                r.p99_over_bound
            ));
        }
        out.push_str(&format!(
            "| lower bound | {b:.2} s | {b:.2} s | {b:.2} s | {:.1} | 1.00 | 1.00 |\n\n",
            s.size as f64 / f64::from(1u32 << 20),
            b = self.lower_bound_s
        ));
        for r in &self.rows {
            if let Some(n) = &r.note {
                out.push_str(&format!("{}: {n}.\n", r.system));
            }
            let failures: Vec<String> = r
                .agents
                .iter()
                .filter_map(|(k, v)| {
                    let kind = k.strip_prefix("shoal_peer_failures_total{kind=\"")?;
                    Some(format!("{} {v:.0}", kind.trim_end_matches("\"}")))
                })
                .collect();
            let sent = spread(r.links.iter().map(|l| l.sent));
            let received = spread(r.links.iter().map(|l| l.received));
            if let (Some((lo, mean, hi)), Some((rlo, _, rhi))) = (sent, received) {
                out.push_str(&format!(
                    "{}: MiB sent per node: min {lo:.0}, mean {mean:.0}, max {hi:.0}; received: min {rlo:.0}, max {rhi:.0}.\n",
                    r.system
                ));
            }
            let stripe_size = shoal_store::parse_size(&s.stripe).unwrap_or(u64::MAX);
            let again = repeated(&r.origin_by_stripe, stripe_size);
            if !again.is_empty() {
                out.push_str(&format!(
                    "{}: the origin sent {} stripes more than once: {}.\n",
                    r.system,
                    again.len(),
                    again.join("; ")
                ));
            }
            if !failures.is_empty() {
                out.push_str(&format!(
                    "{}: failed peer attempts: {}.\n",
                    r.system,
                    failures.join(", ")
                ));
            }
        }
        if let Some(w) = &self.warm {
            out.push_str(&format!(
                "A new node's warm pull: {:.2} s, {:.0} Mbit/s, {:.0}% of its link.\n",
                w.seconds,
                w.mbit,
                100.0 * w.share_of_link
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_skip_the_killed_node_and_compare_with_the_bound() {
        let r = Row::new("x", &[Some(2.0), None, Some(4.0), Some(3.0)], 200, 100, 2.0);
        assert_eq!((r.p50_s, r.p99_s, r.max_s), (3.0, 4.0, 4.0));
        assert_eq!((r.amplification, r.p99_over_bound), (2.0, 2.0));
        assert_eq!(
            spread([1u64 << 20, 3 << 20].into_iter()),
            Some((1.0, 2.0, 3.0))
        );
        assert_eq!(spread(std::iter::empty()), None);
        let w = Warm::new(2.0, 100_000_000, 800.0);
        assert!((w.mbit - 400.0).abs() < 1e-9 && (w.share_of_link - 0.5).abs() < 1e-9);
    }

    #[test]
    fn origin_bytes_are_grouped_by_stripe_and_fetcher() {
        let rows = by_stripe(
            [
                (0, 100, "n1".to_owned()),
                (100, 50, "n2".to_owned()),
                (150, 50, "n2".to_owned()),
                (100, 100, "n3".to_owned()),
                (250, 100, "n1".to_owned()),
            ],
            100,
        );
        let got: Vec<(u64, &str, u32, u64)> = rows
            .iter()
            .map(|r| (r.stripe, r.fetcher.as_str(), r.requests, r.bytes))
            .collect();
        assert_eq!(
            got,
            [
                (0, "n1", 1, 100),
                (1, "n2", 2, 100),
                (1, "n3", 1, 100),
                (2, "n1", 1, 100)
            ]
        );
        assert_eq!(
            repeated(&rows, 100).len(),
            1,
            "only stripe 1 was sent twice"
        );
    }
}
