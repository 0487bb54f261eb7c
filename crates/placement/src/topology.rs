//! Topology labels and tiers.
//!
//! A node carries ordered labels from the widest level to the narrowest
//! (for example `["eu-west-1a", "row-3", "rack-12"]`). Labels are
//! hierarchical: `rack-12` in `row-3` is a different rack from `rack-12` in
//! `row-4`. The *shared depth* of two nodes is how many leading labels they
//! have in common; their *tier* is `depth - shared`, where `depth` is the
//! deepest label list in the view. Tier 0 means "as close as the labels can
//! say" (same rack); higher tiers cross wider boundaries. The brief speaks of
//! "the depth of the deepest shared label"; tiers here count the other way
//! round so that the nearest candidate has the *smallest* tier.

use std::collections::HashMap;
use std::sync::Arc;

/// The most topology levels a node may carry (region, zone, row, rack and
/// two more). Six levels cover every real datacenter hierarchy we know.
pub const MAX_DEPTH: usize = 6;

/// An interned label prefix: equal ids mean equal label prefixes.
pub(crate) type PrefixId = u32;

/// Marks a level a node has no label for; it never matches anything.
const NONE: PrefixId = PrefixId::MAX;

/// One node's interned prefixes, one per level.
pub(crate) type TopoRow = [PrefixId; MAX_DEPTH];

/// A row for a node whose labels are unknown: it shares nothing.
pub(crate) const UNKNOWN_ROW: TopoRow = [NONE; MAX_DEPTH];

/// A node's ordered topology labels, widest first.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Labels(Arc<[String]>);

impl Labels {
    /// Labels from widest to narrowest, e.g. `["zone-a", "row-1", "rack-7"]`.
    pub fn new<I, S>(labels: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Labels(labels.into_iter().map(Into::into).collect())
    }

    /// The labels, widest first.
    pub fn as_slice(&self) -> &[String] {
        &self.0
    }

    /// How many levels.
    pub fn depth(&self) -> usize {
        self.0.len()
    }
}

/// Interns label prefixes so that tier computations compare integers.
///
/// Entries are never removed when nodes leave: their number is bounded by the
/// distinct racks, rows and zones the cluster has ever had, which is small.
#[derive(Clone, Debug, Default)]
pub(crate) struct Interner {
    ids: HashMap<(PrefixId, String), PrefixId>,
    /// `by_depth[d]` counts members with exactly `d` labels, so the view's
    /// depth is known without a scan.
    by_depth: [usize; MAX_DEPTH + 1],
}

impl Interner {
    /// Interns `labels` (at most [`MAX_DEPTH`] of them; the caller checks).
    pub(crate) fn row(&mut self, labels: &Labels) -> TopoRow {
        let mut row = UNKNOWN_ROW;
        let mut parent = NONE;
        for (level, label) in labels.as_slice().iter().enumerate().take(MAX_DEPTH) {
            let next = self.ids.len() as PrefixId;
            let id = *self.ids.entry((parent, label.clone())).or_insert(next);
            row[level] = id;
            parent = id;
        }
        row
    }

    /// Records that a member with `depth` labels joined.
    pub(crate) fn add_member(&mut self, depth: usize) {
        self.by_depth[depth.min(MAX_DEPTH)] += 1;
    }

    /// Records that a member with `depth` labels left.
    pub(crate) fn remove_member(&mut self, depth: usize) {
        let slot = &mut self.by_depth[depth.min(MAX_DEPTH)];
        *slot = slot.saturating_sub(1);
    }

    /// The deepest label list among current members.
    pub(crate) fn depth(&self) -> usize {
        self.by_depth.iter().rposition(|&n| n > 0).unwrap_or(0)
    }
}

/// How many leading levels two rows share.
#[inline]
pub(crate) fn shared_depth(a: &TopoRow, b: &TopoRow) -> usize {
    a.iter()
        .zip(b.iter())
        .take_while(|(x, y)| **x != NONE && x == y)
        .count()
}

/// The tier between two rows in a view of the given depth (0 = nearest).
#[inline]
pub(crate) fn tier(depth: usize, a: &TopoRow, b: &TopoRow) -> u8 {
    // depth <= MAX_DEPTH, so this fits in a u8.
    depth.saturating_sub(shared_depth(a, b)) as u8
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hierarchical_labels_compare_by_prefix() {
        let mut i = Interner::default();
        let a = i.row(&Labels::new(["z1", "row-3", "rack-12"]));
        let b = i.row(&Labels::new(["z1", "row-4", "rack-12"]));
        let c = i.row(&Labels::new(["z1", "row-3", "rack-12"]));
        let d = i.row(&Labels::new(["z2", "row-3", "rack-12"]));
        assert_eq!(shared_depth(&a, &c), 3);
        assert_eq!(shared_depth(&a, &b), 1);
        assert_eq!(shared_depth(&a, &d), 0);
        assert_eq!(tier(3, &a, &c), 0);
        assert_eq!(tier(3, &a, &b), 2);
        assert_eq!(tier(3, &a, &d), 3);
    }

    #[test]
    fn unknown_labels_share_nothing() {
        let mut i = Interner::default();
        let a = i.row(&Labels::default());
        assert_eq!(shared_depth(&a, &a), 0);
        assert_eq!(tier(2, &a, &UNKNOWN_ROW), 2);
    }

    #[test]
    fn depth_tracks_members() {
        let mut i = Interner::default();
        assert_eq!(i.depth(), 0);
        i.add_member(3);
        i.add_member(1);
        assert_eq!(i.depth(), 3);
        i.remove_member(3);
        assert_eq!(i.depth(), 1);
    }
}
