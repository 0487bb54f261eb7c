//! Summaries across seeds: mean with the 5th and 95th percentiles, and
//! the paired benefit of one rule over another.

use serde::Serialize;

/// `mean [p5, p95]` of one figure across seeds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Summary {
    /// Mean.
    pub mean: f64,
    /// 5th percentile (nearest rank).
    pub p5: f64,
    /// 95th percentile (nearest rank).
    pub p95: f64,
}

/// Nearest-rank percentile `p` (0 to 100) of `sorted`; 0 when empty.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

impl Summary {
    /// The summary of `values`.
    pub fn of(values: &[f64]) -> Summary {
        let mut v = values.to_vec();
        v.sort_by(f64::total_cmp);
        let mean = if v.is_empty() {
            0.0
        } else {
            v.iter().sum::<f64>() / v.len() as f64
        };
        Summary {
            mean,
            p5: percentile(&v, 5.0),
            p95: percentile(&v, 95.0),
        }
    }

    /// Whether `[p5, p95]` contains zero: the difference is not clear.
    pub fn crosses_zero(&self) -> bool {
        self.p5 <= 0.0 && self.p95 >= 0.0
    }
}

/// Per pair, `(baseline - candidate) / baseline` (0 where the baseline is
/// 0): how much lower the candidate is.
pub fn paired_benefit(candidate: &[f64], baseline: &[f64]) -> Vec<f64> {
    candidate
        .iter()
        .zip(baseline)
        .map(|(c, b)| if *b == 0.0 { 0.0 } else { (b - c) / b })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summaries_and_benefits() {
        let s = Summary::of(&(1..=100).map(f64::from).collect::<Vec<_>>());
        assert_eq!((s.mean, s.p5, s.p95), (50.5, 5.0, 95.0));
        assert_eq!(Summary::of(&[]), Summary::default());
        let b = paired_benefit(&[1.0, 3.0, 5.0], &[2.0, 3.0, 0.0]);
        assert_eq!(b, [0.5, 0.0, 0.0]);
        assert!(Summary::of(&[-0.1, 0.2]).crosses_zero());
        assert!(!Summary::of(&[0.1, 0.2]).crosses_zero());
    }
}
