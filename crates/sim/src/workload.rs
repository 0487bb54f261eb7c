//! What the fleet asks for: files of stripes, popular by a Zipf law, and
//! the order in which nodes request them. Everything is drawn from the
//! caller's RNG, so a seed fixes the whole demand.

use crate::rng::{below, unit};
use rand::Rng;
use serde::Serialize;
use shoal_placement::Key;

/// The workload's shape.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Workload {
    /// Files (default 20).
    pub files: usize,
    /// Stripes per file (default 10).
    pub stripes: usize,
    /// Zipf exponent of file popularity (default 1.0; 0 is uniform).
    pub alpha: f64,
    /// Requests per node (default 1.0; fractions draw the remainder at
    /// random).
    pub requests_per_node: f64,
}

impl Default for Workload {
    fn default() -> Self {
        Workload {
            files: 20,
            stripes: 10,
            alpha: 1.0,
            requests_per_node: 1.0,
        }
    }
}

/// One node asking for one whole file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Request {
    /// The asking node (index into the fleet).
    pub client: u32,
    /// The file, by popularity rank (0 is the hottest).
    pub file: u32,
}

impl Workload {
    /// Stripe `s` of file `f` as one number, `f * stripes + s`.
    pub fn stripe_id(&self, f: u32, s: u32) -> u32 {
        f * self.stripes as u32 + s
    }

    /// Every stripe's placement key, by stripe id.
    pub fn keys(&self) -> Vec<Key> {
        (0..self.files)
            .flat_map(|f| {
                (0..self.stripes)
                    .map(move |s| Key::for_stripe(format!("file-{f}").as_bytes(), s as u64))
            })
            .collect()
    }

    /// The cumulative popularity of files by rank.
    fn cdf(&self) -> Vec<f64> {
        let weights: Vec<f64> = (1..=self.files)
            .map(|k| (k as f64).powf(-self.alpha))
            .collect();
        let total: f64 = weights.iter().sum();
        let mut acc = 0.0;
        weights
            .iter()
            .map(|w| {
                acc += w / total;
                acc
            })
            .collect()
    }

    /// The requests, in the order they are made, by the nodes for which
    /// `alive` holds: each such node asks `requests_per_node` times (the
    /// fraction at random), for a file drawn by popularity.
    pub fn requests<R: Rng + ?Sized>(&self, alive: &[u32], rng: &mut R) -> Vec<Request> {
        let cdf = self.cdf();
        let whole = self.requests_per_node.floor() as usize;
        let frac = self.requests_per_node - whole as f64;
        let mut out = Vec::with_capacity(alive.len() * (whole + 1));
        for &client in alive {
            let extra = usize::from(unit(rng) < frac);
            for _ in 0..whole + extra {
                let u = unit(rng);
                let file = cdf.partition_point(|&c| c < u).min(self.files - 1) as u32;
                out.push(Request { client, file });
            }
        }
        shuffle(&mut out, rng);
        out
    }

    /// The order in which one request pulls its file's stripes.
    pub fn stripe_order<R: Rng + ?Sized>(&self, rng: &mut R) -> Vec<u32> {
        let mut order: Vec<u32> = (0..self.stripes as u32).collect();
        shuffle(&mut order, rng);
        order
    }
}

/// Fisher–Yates with the caller's RNG.
pub fn shuffle<T, R: Rng + ?Sized>(items: &mut [T], rng: &mut R) {
    for i in (1..items.len()).rev() {
        items.swap(i, below(rng, i + 1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn zipf_favours_the_first_files_and_counts_add_up() {
        let w = Workload {
            requests_per_node: 2.5,
            ..Workload::default()
        };
        let alive: Vec<u32> = (0..4000).collect();
        let reqs = w.requests(&alive, &mut ChaCha8Rng::seed_from_u64(3));
        // 2 each plus about half a request more.
        assert!((9_600..10_400).contains(&reqs.len()), "{}", reqs.len());
        let mut per_file = vec![0usize; w.files];
        for r in &reqs {
            per_file[r.file as usize] += 1;
        }
        // Rank 1 about twice rank 2 and ten times rank 10 (alpha 1).
        let ratio = per_file[0] as f64 / per_file[1] as f64;
        assert!((1.7..2.3).contains(&ratio), "{ratio}");
        assert!(per_file[0] > 6 * per_file[9]);
        let uniform = Workload {
            alpha: 0.0,
            ..Workload::default()
        };
        let reqs = uniform.requests(&alive, &mut ChaCha8Rng::seed_from_u64(3));
        let hot = reqs.iter().filter(|r| r.file == 0).count();
        assert!((150..260).contains(&hot), "{hot}");
    }

    #[test]
    fn stripe_orders_are_permutations() {
        let w = Workload::default();
        let mut rng = ChaCha8Rng::seed_from_u64(9);
        let mut o = w.stripe_order(&mut rng);
        o.sort_unstable();
        assert_eq!(o, (0..10).collect::<Vec<_>>());
        assert_eq!(w.keys().len(), 200);
    }
}
