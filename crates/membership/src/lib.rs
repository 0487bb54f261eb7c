//! shoal's membership: SWIM failure detection and gossip (foca) over a
//! packet transport, and the roster of members it maintains.
//!
//! - [`identity`]: what a member advertises (name, addresses, labels,
//!   generation) and how a restarted node replaces its old self.
//! - [`config`]: the timers, tuned for a datacenter.
//! - [`gossip`]: the one task that owns the SWIM state.
//! - [`roster`]: members and their states, published on every change.
//! - [`transport`]: UDP, or an in-memory network on tokio's clock.
//!
//! - [`bootstrap`]: seeds, the roster pulled in one batch, anti-entropy;
//!   the agent supplies the HTTP client rosters come through.

pub mod bootstrap;
pub mod config;
pub mod gossip;
pub mod identity;
pub mod roster;
pub mod transport;

pub use bootstrap::{RosterSource, resolve};
pub use config::{ConfigError, GossipConfig};
pub use gossip::{Gossip, GossipError};
pub use identity::Peer;
pub use roster::{MemberState, Record, Roster};
pub use transport::{MemoryNet, Transport};
