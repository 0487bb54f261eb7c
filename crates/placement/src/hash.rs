//! The hashes placement is built on, each specified so that every node, on
//! every platform and Rust release, computes the same numbers.
//!
//! - A node's id is `XXH3-64(name)` with seed 0, and is also its point on
//!   the ring. A restarted node with the same name lands on the same point.
//! - A stripe's key is `XXH3-64(identity || u64_le(index))` with seed 0.
//! - Probe points (where a key looks on the ring) are
//!   `mix64(key ^ mix64(tag))`, where `tag` packs a domain, a slot and a
//!   probe number, and `mix64` is the SplitMix64 finaliser (Stafford's
//!   variant 13). Both are bijections on `u64`, so distinct tags give
//!   distinct, well-spread points for one key.

use std::fmt;
use xxhash_rust::xxh3::{Xxh3Default, xxh3_64};

/// A node's stable identity and its point on the ring: `XXH3-64(name)`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeId(pub u64);

impl NodeId {
    /// The id of the node called `name` (the Kubernetes node name, say).
    pub fn from_name(name: &str) -> Self {
        NodeId(xxh3_64(name.as_bytes()))
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeId({:016x})", self.0)
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// The placement key of one stripe: where on the ring it belongs.
///
/// It only decides placement; stores and the wire keep the full object
/// identity, so two stripes that share a key (a 1 in 2^64 event) share a
/// route, never bytes.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct Key(pub u64);

impl Key {
    /// The key of stripe `index` of the object whose identity is `identity`
    /// (for example the bytes of `sha256:…`).
    pub fn for_stripe(identity: &[u8], index: u64) -> Self {
        let mut h = Xxh3Default::new();
        h.update(identity);
        h.update(&index.to_le_bytes());
        Key(h.digest())
    }

    /// The key of the object whose identity is `identity` as a whole: it
    /// orders each rack's members as the object's piece relays
    /// ([`crate::View::relay_plan`]). Distinct from every stripe's key.
    pub fn for_object(identity: &[u8]) -> Self {
        let mut h = Xxh3Default::new();
        h.update(identity);
        h.update(b"\xffobject");
        Key(h.digest())
    }
}

/// SplitMix64's finaliser (Stafford variant 13): a fast bijection on `u64`
/// whose output bits each depend on every input bit.
#[inline]
pub(crate) fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// What a probe point is for; part of the probe's tag so that the owner's
/// probes and the finger sets' probes never coincide.
#[derive(Clone, Copy)]
#[repr(u64)]
pub(crate) enum Domain {
    Owner = 1,
    L2 = 2,
    L1 = 3,
    Rack = 4,
}

/// The `p`-th probe point of slot `slot` of `domain` for `key`.
#[inline]
pub(crate) fn probe(key: Key, domain: Domain, slot: u32, p: u32) -> u64 {
    let tag = ((domain as u64) << 56) | (u64::from(slot) << 16) | u64::from(p & 0xffff);
    mix64(key.0 ^ mix64(tag))
}

#[cfg(test)]
mod tests {
    use super::*;

    // Known answers: if any of these change, every deployed node would
    // disagree with an upgraded one about who owns what.
    #[test]
    fn node_ids_are_stable() {
        assert_eq!(NodeId::from_name("").0, 0x2d06_8005_38d3_94c2);
        assert_eq!(NodeId::from_name("node-a").0, NodeId::from_name("node-a").0);
        assert_ne!(NodeId::from_name("node-a"), NodeId::from_name("node-b"));
    }

    #[test]
    fn mix64_known_answers() {
        // SplitMix64 outputs for state increments of the golden gamma.
        assert_eq!(mix64(0x9e37_79b9_7f4a_7c15), 0xe220_a839_7b1d_cdaf);
        assert_eq!(mix64(0), 0);
    }

    #[test]
    fn stripe_keys_depend_on_identity_and_index() {
        let a0 = Key::for_stripe(b"sha256:aa", 0);
        assert_eq!(a0, Key::for_stripe(b"sha256:aa", 0));
        assert_ne!(a0, Key::for_stripe(b"sha256:aa", 1));
        assert_ne!(a0, Key::for_stripe(b"sha256:ab", 0));
    }

    #[test]
    fn probes_differ_by_domain_slot_and_number() {
        let k = Key(42);
        let all = [
            probe(k, Domain::Owner, 0, 0),
            probe(k, Domain::Owner, 0, 1),
            probe(k, Domain::L2, 0, 0),
            probe(k, Domain::L2, 1, 0),
            probe(k, Domain::L1, 0, 0),
        ];
        for (i, a) in all.iter().enumerate() {
            for b in &all[i + 1..] {
                assert_ne!(a, b);
            }
        }
    }
}
