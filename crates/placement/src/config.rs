//! Cluster-wide placement settings. Every node must use the same values, or
//! nodes will disagree about owners and finger sets.

use crate::error::PlacementError;

/// Most probes a lookup may use; more buys no balance worth the time.
pub const MAX_PROBES: u32 = 64;

/// Placement settings shared by the agent and the simulator.
#[derive(Clone, Debug, PartialEq)]
pub struct PlacementConfig {
    /// `r`: the owner plus `r - 1` successors form the fallback tail.
    pub replicas: usize,
    /// `V`: the L2 finger set has `V * b` nodes.
    pub v: usize,
    /// Probability of choosing H1 uniformly from L1 instead of by nearest
    /// tier. `None` means the default `1 / b`.
    pub eps: Option<f64>,
    /// Probes per owner lookup. With `k` probes the busiest owner holds
    /// about `(k + 1) / k` of the mean share before sampling noise.
    pub owner_probes: u32,
    /// Probes per finger-set slot (same trade-off, on a hotter path).
    pub finger_probes: u32,
    /// Choose H2 by nearest tier (`true`) or uniformly (`false`).
    pub nearest_l2: bool,
    /// Choose H1 by nearest tier, with eps-jitter (`true`), or uniformly.
    pub nearest_l1: bool,
    /// Fewest live members a rack needs for rack relays (see
    /// [`crate::View::relay_plan`]); a smaller rack, or a node without a
    /// full set of labels, fetches along its path as without relays.
    /// `usize::MAX` turns relays off.
    pub rack_relay_min: usize,
}

impl Default for PlacementConfig {
    fn default() -> Self {
        PlacementConfig {
            replicas: 8,
            v: 2,
            eps: None,
            owner_probes: 21,
            finger_probes: 4,
            nearest_l2: true,
            nearest_l1: true,
            rack_relay_min: 4,
        }
    }
}

impl PlacementConfig {
    /// Checks every value's range.
    pub fn validate(&self) -> Result<(), PlacementError> {
        let bad = |setting, reason: &str| {
            Err(PlacementError::InvalidConfig {
                setting,
                reason: reason.to_owned(),
            })
        };
        if self.replicas == 0 || self.replicas > 64 {
            return bad("replicas", "must be between 1 and 64");
        }
        if self.v == 0 || self.v > 16 {
            return bad("v", "must be between 1 and 16");
        }
        if let Some(eps) = self.eps
            && !(0.0..=1.0).contains(&eps)
        {
            return bad("eps", "must be a probability between 0 and 1");
        }
        for (setting, k) in [
            ("owner_probes", self.owner_probes),
            ("finger_probes", self.finger_probes),
        ] {
            if k == 0 || k > MAX_PROBES {
                return bad(setting, "must be between 1 and 64");
            }
        }
        Ok(())
    }
}

/// `b = max(2, ceil(n^(1/3)))`, in exact integer arithmetic.
pub fn fan_base(n: usize) -> usize {
    let mut b = 2usize;
    while b.saturating_mul(b).saturating_mul(b) < n {
        b += 1;
    }
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fan_base_is_the_ceiling_cube_root() {
        assert_eq!(fan_base(0), 2);
        assert_eq!(fan_base(8), 2);
        assert_eq!(fan_base(9), 3);
        assert_eq!(fan_base(1000), 10);
        assert_eq!(fan_base(1001), 11);
        assert_eq!(fan_base(10_000), 22);
        assert_eq!(fan_base(100_000), 47);
    }

    #[test]
    fn validation_catches_bad_values() {
        assert!(PlacementConfig::default().validate().is_ok());
        let eps = PlacementConfig {
            eps: Some(1.5),
            ..Default::default()
        };
        assert!(matches!(
            eps.validate(),
            Err(PlacementError::InvalidConfig { setting: "eps", .. })
        ));
        let r = PlacementConfig {
            replicas: 0,
            ..Default::default()
        };
        assert!(r.validate().is_err());
        let k = PlacementConfig {
            finger_probes: 0,
            ..Default::default()
        };
        assert!(k.validate().is_err());
    }
}
