//! Gossip timers, tuned for a datacenter, each with a documented default.

use serde::Deserialize;
use std::num::{NonZeroU8, NonZeroUsize};
use std::time::Duration;

/// SWIM timers and fan-outs, in milliseconds where they are times.
///
/// The defaults aim at detection in about three seconds on a LAN whose
/// round trips are well under a millisecond: a member is probed about
/// every `probe_period_ms` by someone, a silent one is suspected after
/// `probe_rtt_ms` plus indirect probes, declared down `suspect_ms` later,
/// and the news spreads by periodic gossip in a few `gossip_every_ms`.
/// foca's LAN preset (memberlist's) waits 1 s per probe and 4 to 16 s in
/// suspicion, which is tuned for noisier networks than a rack.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct GossipConfig {
    /// How often this node probes one member (default 500).
    pub probe_period_ms: u64,
    /// How long a direct probe may take before indirect probes go out
    /// (default 200; must be below `probe_period_ms`).
    pub probe_rtt_ms: u64,
    /// Members asked to probe indirectly, and gossip fan-out (default 3).
    pub indirect_probes: usize,
    /// How long a suspect has to refute before it is declared down
    /// (default 1500).
    pub suspect_ms: u64,
    /// How often updates are pushed to `gossip_fanout` random members
    /// (default 200).
    pub gossip_every_ms: u64,
    /// Members each periodic gossip goes to (default 3).
    pub gossip_fanout: usize,
    /// How often a connected node re-announces itself to one member, which
    /// heals partitions (default 30000).
    pub announce_every_ms: u64,
    /// How long a down member is remembered, so late news of it is
    /// recognised as stale (default 600000, ten minutes).
    pub forget_down_ms: u64,
    /// Largest gossip packet, sent or accepted (default 1400, one
    /// Ethernet frame).
    pub max_packet: usize,
    /// How often a node that knows no live peer asks its seeds for the
    /// roster again (default 1000).
    pub retry_ms: u64,
    /// How often a connected node pulls the full roster from one random
    /// live member and merges it (anti-entropy, as memberlist's push-pull;
    /// default 15000). Gossip alone can miss an update when many happen
    /// at once, as when a whole fleet starts together.
    pub sync_ms: u64,
}

impl Default for GossipConfig {
    fn default() -> Self {
        GossipConfig {
            probe_period_ms: 500,
            probe_rtt_ms: 200,
            indirect_probes: 3,
            suspect_ms: 1500,
            gossip_every_ms: 200,
            gossip_fanout: 3,
            announce_every_ms: 30_000,
            forget_down_ms: 600_000,
            max_packet: 1400,
            retry_ms: 1000,
            sync_ms: 15_000,
        }
    }
}

/// The largest UDP payload over IPv4, less the seal's tag
/// (`transport::TAG`) that a keyed transport adds.
const MAX_DATAGRAM: usize = 65_507 - crate::transport::TAG;

/// Why a gossip configuration cannot be used.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ConfigError {
    /// A setting is out of range.
    #[error("gossip setting {0}")]
    Invalid(&'static str),
}

impl GossipConfig {
    /// foca's configuration for a cluster of about `members` nodes (it
    /// sizes how often each update is retransmitted).
    pub fn to_foca(&self, members: usize) -> Result<foca::Config, ConfigError> {
        if self.probe_rtt_ms == 0 || self.probe_rtt_ms >= self.probe_period_ms {
            return Err(ConfigError::Invalid(
                "probe_rtt_ms must be above 0 and below probe_period_ms",
            ));
        }
        if [
            self.suspect_ms,
            self.gossip_every_ms,
            self.announce_every_ms,
            self.retry_ms,
            self.sync_ms,
        ]
        .contains(&0)
        {
            return Err(ConfigError::Invalid(
                "suspect_ms, gossip_every_ms, announce_every_ms, retry_ms and sync_ms must be above 0",
            ));
        }
        let nz = |v: usize, what| NonZeroUsize::new(v).ok_or(ConfigError::Invalid(what));
        if !(512..=MAX_DATAGRAM).contains(&self.max_packet) {
            return Err(ConfigError::Invalid(
                "max_packet must be between 512 and 65491 (one UDP datagram, less the 16-byte seal)",
            ));
        }
        // Each update rides on about 4·log10(n + 1) packets, as memberlist
        // and foca's presets do.
        let tx = (4.0 * ((members as f64) + 1.0).log10()).clamp(2.0, 255.0) as u8;
        let ms = Duration::from_millis;
        let periodic = |every, fanout| foca::PeriodicParams {
            frequency: ms(every),
            num_members: fanout,
        };
        let fanout = nz(self.gossip_fanout, "gossip_fanout must be above 0")?;
        Ok(foca::Config {
            probe_period: ms(self.probe_period_ms),
            probe_rtt: ms(self.probe_rtt_ms),
            num_indirect_probes: nz(self.indirect_probes, "indirect_probes must be above 0")?,
            max_transmissions: NonZeroU8::new(tx).unwrap_or(NonZeroU8::MIN),
            suspect_to_down_after: ms(self.suspect_ms),
            remove_down_after: Some(ms(self.forget_down_ms)),
            max_packet_size: nz(self.max_packet, "max_packet")?,
            notify_down_members: true,
            periodic_announce: Some(periodic(self.announce_every_ms, NonZeroUsize::MIN)),
            periodic_announce_to_down_members: Some(periodic(
                self.announce_every_ms * 2,
                NonZeroUsize::MIN,
            )),
            periodic_gossip: Some(periodic(self.gossip_every_ms, fanout)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_bad_values_are_refused() {
        let c = GossipConfig::default().to_foca(8);
        assert!(c.is_ok());
        let bad = GossipConfig {
            probe_rtt_ms: 600,
            ..GossipConfig::default()
        };
        assert!(bad.to_foca(8).is_err());
        let bad = GossipConfig {
            gossip_fanout: 0,
            ..GossipConfig::default()
        };
        assert!(bad.to_foca(8).is_err());
        let bad = GossipConfig {
            max_packet: 1 << 30,
            ..GossipConfig::default()
        };
        assert!(bad.to_foca(8).is_err());
    }
}
