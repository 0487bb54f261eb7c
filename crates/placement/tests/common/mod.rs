//! Views and keys shared by the placement tests.
#![allow(dead_code)]

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use shoal_placement::{Key, Labels, Member, NodeId, PlacementConfig, View};

/// A seeded RNG: every statistical test is reproducible.
pub fn rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}

/// Node `i` of a datacenter with `per_rack` nodes a rack and
/// `racks_per_row` racks a row, labelled `[row, rack]`.
pub fn dc_member(prefix: &str, i: usize, per_rack: usize, racks_per_row: usize) -> Member {
    let rack = i / per_rack;
    Member::new(
        format!("{prefix}-{i}"),
        Labels::new([
            format!("row-{}", rack / racks_per_row),
            format!("rack-{rack}"),
        ]),
    )
}

/// `n` nodes named `{prefix}-{i}`, 32 to a rack, 16 racks to a row.
pub fn dc_view(prefix: &str, n: usize) -> View {
    View::with_members(
        PlacementConfig::default(),
        (0..n).map(|i| dc_member(prefix, i, 32, 16)),
    )
    .expect("a valid view")
}

/// The ids of a view's members, in ring order.
pub fn ids(view: &View) -> Vec<NodeId> {
    view.members().map(|(id, _, _)| id).collect()
}

/// Key number `i` of a test.
pub fn key(i: u64) -> Key {
    Key::for_stripe(b"sha256:test-object", i)
}
