//! The placement core's typed errors.

use crate::hash::NodeId;

/// Why a view or a configuration was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PlacementError {
    /// A member was given an empty name.
    #[error("a node name must not be empty")]
    EmptyName,
    /// A member carries more topology labels than the core supports.
    #[error("node {name:?} has {depth} topology labels; at most {max} are supported")]
    TooManyLabels {
        /// The member's name.
        name: String,
        /// How many labels it carried.
        depth: usize,
        /// The limit ([`crate::MAX_DEPTH`]).
        max: usize,
    },
    /// Two different names hash to the same node id.
    #[error("node names {existing:?} and {new:?} both hash to node id {id}; rename one")]
    IdCollision {
        /// The member already in the view.
        existing: String,
        /// The member that was refused.
        new: String,
        /// The shared id.
        id: NodeId,
    },
    /// The view is full (more than `u32::MAX - 1` members).
    #[error("a view holds at most {max} members")]
    TooManyMembers {
        /// The limit.
        max: usize,
    },
    /// A configuration value is out of range.
    #[error("invalid placement setting {setting}: {reason}")]
    InvalidConfig {
        /// The setting's name.
        setting: &'static str,
        /// What is wrong with it.
        reason: String,
    },
}
