//! What the agents did during one rollout, read from their `/metrics`:
//! every `shoal_` counter summed over the agents, before and after, so a
//! row of the report says where bytes came from and what failed.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

/// Sums of each `shoal_` sample (name with labels) over some agents.
pub type Totals = BTreeMap<String, f64>;

/// Reads `/metrics` of every agent at `ips` (port `port`) and sums each
/// sample over them. An agent that does not answer counts as nothing
/// (a killed node).
pub async fn totals(client: &reqwest::Client, ips: &[Ipv4Addr], port: u16) -> Totals {
    let mut sum = Totals::new();
    for ip in ips {
        let url = format!("http://{ip}:{port}/metrics");
        let Ok(r) = client.get(&url).send().await else {
            continue;
        };
        let Ok(text) = r.text().await else { continue };
        for (k, v) in parse(&text) {
            *sum.entry(k).or_default() += v;
        }
    }
    sum
}

/// `after - before`, keeping only samples that moved.
pub fn delta(before: &Totals, after: &Totals) -> Totals {
    after
        .iter()
        .filter_map(|(k, v)| {
            let d = v - before.get(k).copied().unwrap_or(0.0);
            (d != 0.0).then(|| (k.clone(), d))
        })
        .collect()
}

/// The counter and gauge samples of a Prometheus text page, histogram
/// buckets left out.
fn parse(text: &str) -> impl Iterator<Item = (String, f64)> + '_ {
    text.lines().filter_map(|line| {
        if line.starts_with('#') || line.contains("_bucket") {
            return None;
        }
        let (name, value) = line.rsplit_once(' ')?;
        let value: f64 = value.parse().ok()?;
        name.starts_with("shoal_").then(|| (name.to_owned(), value))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_samples_and_skips_comments_and_buckets() {
        let page = "# HELP shoal_origin_bytes x\n# TYPE shoal_origin_bytes counter\n\
                    shoal_origin_bytes_total 1024\n\
                    shoal_peer_failures_total{kind=\"stall\"} 3\n\
                    shoal_stripe_fetch_seconds_bucket{le=\"1.0\"} 2\n\
                    other_metric 5\n";
        let got: Totals = parse(page).collect();
        assert_eq!(got.len(), 2);
        assert_eq!(got["shoal_origin_bytes_total"], 1024.0);
        assert_eq!(got["shoal_peer_failures_total{kind=\"stall\"}"], 3.0);
    }

    #[test]
    fn delta_keeps_what_moved() {
        let before: Totals = [("a".to_owned(), 1.0), ("b".to_owned(), 2.0)].into();
        let after: Totals = [
            ("a".to_owned(), 1.0),
            ("b".to_owned(), 5.0),
            ("c".to_owned(), 1.0),
        ]
        .into();
        let d = delta(&before, &after);
        assert_eq!(d.len(), 2);
        assert_eq!(d["b"], 3.0);
        assert_eq!(d["c"], 1.0);
    }
}
