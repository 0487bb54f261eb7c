//! The ring: every member's point, sorted, with a bucket index that turns
//! "first point at or after `x`" into, most of the time, a single read.
//!
//! Each node has a single point (its id). Balance does not come from
//! virtual points but from multi-probe lookups (see [`crate::select`]), which
//! keeps the ring at 8 bytes per node: 800 KB at 100,000 nodes, small enough
//! that every agent holds the whole roster and lookups stay in cache.

/// Sorted ring points plus a bucket index over their top bits.
#[derive(Clone, Debug)]
pub(crate) struct Ring {
    /// Ring points in ascending order (position `i` is node index `i`),
    /// then a sentinel `u64::MAX` that ends every scan without a bounds
    /// test.
    points: Vec<u64>,
    /// `index[b]` is the first `i` whose point's top bits are `>= b`.
    index: Vec<u32>,
    /// `64 - log2(index.len())`.
    shift: u32,
}

impl Default for Ring {
    fn default() -> Self {
        Ring::from_sorted(Vec::new())
    }
}

impl Ring {
    /// Builds a ring over `points`, which must be sorted and distinct.
    pub(crate) fn from_sorted(mut points: Vec<u64>) -> Self {
        debug_assert!(points.windows(2).all(|w| w[0] < w[1]));
        points.push(u64::MAX);
        let mut ring = Ring {
            points,
            index: Vec::new(),
            shift: 63,
        };
        ring.reindex();
        ring
    }

    /// Number of points.
    #[inline]
    pub(crate) fn len(&self) -> usize {
        self.points.len() - 1
    }

    /// All points, ascending.
    #[inline]
    pub(crate) fn points(&self) -> &[u64] {
        &self.points[..self.len()]
    }

    /// The point at node index `i`.
    #[inline]
    pub(crate) fn point(&self, i: usize) -> u64 {
        self.points[i]
    }

    /// Where `point` is, or where it would be inserted.
    pub(crate) fn search(&self, point: u64) -> Result<usize, usize> {
        self.points().binary_search(&point)
    }

    /// Inserts `point` at `at` (from [`Ring::search`]) and reindexes.
    pub(crate) fn insert(&mut self, at: usize, point: u64) {
        self.points.insert(at, point);
        self.reindex();
    }

    /// Removes the point at `at` and reindexes.
    pub(crate) fn remove(&mut self, at: usize) {
        self.points.remove(at);
        self.reindex();
    }

    /// The index and point of the first point at or after `x` clockwise
    /// (wrapping). The ring must not be empty.
    ///
    /// The first two scan steps are branch-free: a lookup's cost is its
    /// cache misses, and a mispredicted branch would stop the CPU from
    /// overlapping them with the next probe's.
    #[inline]
    pub(crate) fn first_at_or_after(&self, x: u64) -> (usize, u64) {
        let p = &self.points;
        let mut i = self.index[(x >> self.shift) as usize] as usize;
        i += usize::from(p[i] < x);
        i += usize::from(p[i] < x);
        while p[i] < x {
            i += 1;
        }
        if i == self.len() {
            (0, p[0])
        } else {
            (i, p[i])
        }
    }

    /// Rebuilds the bucket index, two to four buckets per point: a lookup
    /// then scans past more than two points about once in fifty.
    fn reindex(&mut self) {
        let n = self.len();
        let buckets = (n.max(1) * 2).next_power_of_two().max(2);
        self.shift = 64 - buckets.trailing_zeros();
        self.index.clear();
        self.index.reserve(buckets);
        let mut i = 0usize;
        for b in 0..buckets as u64 {
            while i < n && (self.points[i] >> self.shift) < b {
                i += 1;
            }
            // Node counts are far below u32::MAX (the view enforces it).
            self.index.push(i as u32);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(points: &[u64], x: u64) -> usize {
        points.iter().position(|&p| p >= x).unwrap_or(0)
    }

    fn check(ring: &Ring, points: &[u64], x: u64) {
        let want = naive(points, x);
        assert_eq!(
            ring.first_at_or_after(x),
            (want, points[want]),
            "x = {x:#x}"
        );
    }

    #[test]
    fn lookup_matches_a_linear_scan() {
        let mut points: Vec<u64> = (0..1000u64).map(|i| crate::hash::mix64(i + 1)).collect();
        points.sort_unstable();
        let ring = Ring::from_sorted(points.clone());
        for x in (0..5000u64).map(|i| crate::hash::mix64(i ^ 0xdead_beef)) {
            check(&ring, &points, x);
        }
        for &p in &points {
            check(&ring, &points, p);
            check(&ring, &points, p.wrapping_add(1));
            check(&ring, &points, p.wrapping_sub(1));
        }
        check(&ring, &points, u64::MAX);
        check(&ring, &points, 0);
    }

    #[test]
    fn insert_and_remove_keep_the_index_right() {
        let mut ring = Ring::from_sorted(vec![10, 20]);
        let at = ring.search(15).unwrap_err();
        ring.insert(at, 15);
        assert_eq!(ring.points(), &[10, 15, 20]);
        assert_eq!(ring.first_at_or_after(11), (1, 15));
        assert_eq!(ring.first_at_or_after(21), (0, 10));
        ring.remove(0);
        assert_eq!(ring.first_at_or_after(0), (0, 15));
        assert_eq!(ring.point(0), 15);
        assert_eq!(ring.len(), 2);
    }
}
