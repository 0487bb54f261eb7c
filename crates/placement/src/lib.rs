//! shoal's placement core: given a membership view and a stripe key, which
//! nodes hold it, and which path a client's request takes to reach it.
//!
//! This crate is pure: no I/O, no clock, no global randomness (callers pass
//! an RNG), no threads. The agent routes real requests with it and the
//! simulator routes millions of virtual ones with the very same code; two
//! nodes with the same [`View`] compute the same answers.
//!
//! - [`hash`]: node ids, stripe keys and probe points, specified hashes.
//! - [`View`]: members, liveness and topology, cheap to change.
//! - [`View::owner`], [`View::successors`], [`View::l2`], [`View::l1`]:
//!   multi-probe selection on the ring (`select`).
//! - [`View::path`] and [`View::nearest_tier`]: nearest-tier routing.
//! - [`View::relay_plan`] and [`View::hop_set`]: which rack member pulls
//!   a piece of a stripe for its whole rack (`rack`, `share`).
//!
//! ```
//! use shoal_placement::{Key, Labels, Member, NodeId, PlacementConfig, View};
//! use rand::SeedableRng;
//!
//! let members = (0..100).map(|i| {
//!     Member::new(format!("node-{i}"), Labels::new(["zone-a", &format!("rack-{}", i % 10)]))
//! });
//! let view = View::with_members(PlacementConfig::default(), members).unwrap();
//! let key = Key::for_stripe(b"sha256:0123", 0);
//! let me = NodeId::from_name("node-7");
//! let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
//! let path = view.path(me, key, &mut rng);
//! assert!(path.hops().len() <= 3);
//! assert!(!path.hops().contains(&me));
//! ```

pub mod hash;

mod config;
mod error;
mod path;
mod rack;
mod ring;
mod select;
mod share;
mod topology;
mod view;

pub use config::{MAX_PROBES, PlacementConfig, fan_base};
pub use error::PlacementError;
pub use hash::{Key, NodeId};
pub use path::Path;
pub use share::RelayPlan;
pub use topology::{Labels, MAX_DEPTH};
pub use view::{Member, View};
