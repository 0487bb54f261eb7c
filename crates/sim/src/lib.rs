//! shoal's simulator: the real placement core (`shoal-placement`, the
//! code the agent routes with) driven at 10,000 to 100,000 nodes, with no
//! network and no clock. Deterministic for a seed: every random draw
//! comes from ChaCha streams derived from it.
//!
//! - [`counting`]: the counting model, one pull after another, with
//!   forward-and-cache into per-node LRU stores; hops, locality, copies,
//!   serve skew.
//! - [`placement`]: `shoal sim placement`, the counting model over many
//!   seeds, nearest-tier routing paired with uniform choice.
//! - [`capacity`]: `shoal sim capacity`, stores against working sets of
//!   large models.
//! - [`timed`]: the timed model, flows over a rate-limited network in
//!   time steps, for shoal and the baselines.
//! - [`rollout`]: `shoal sim rollout`, one object to every node at once.
//! - [`churn`]: `shoal sim churn`, a rollout while nodes leave and join.
//! - [`scaledown`]: `shoal sim scale-down`, nodes vanish from a warm fleet
//!   while new ones join and pull.
//! - [`partition`]: `shoal sim partition`, a rollout with cut links.
//! - [`topology`], [`workload`]: the fleet and its demand.
//! - [`stats`], [`table`], [`figure`]: summaries, their printing, and
//!   each scenario's main figure as data.
//!
//! This crate links neither the agent nor any HTTP stack.

pub mod capacity;
pub mod churn;
pub mod counting;
pub mod figure;
pub mod par;
pub mod partition;
pub mod placement;
pub mod rng;
pub mod rollout;
pub mod scaledown;
pub mod stats;
pub mod table;
pub mod timed;
pub mod topology;
pub mod workload;
