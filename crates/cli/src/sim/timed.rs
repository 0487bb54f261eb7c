//! Options of the timed model's scenarios (`rollout`, `churn`,
//! `scale-down`, `partition`) and the settings they build.

use super::{Output, size};
use anyhow::{Result, bail};
use clap::{Args, ValueEnum};
use shoal_sim::churn::Churn;
use shoal_sim::timed::net::Network;
use shoal_sim::timed::{Relay, System, Timed};

#[derive(Clone, Copy, ValueEnum)]
pub(super) enum SystemArg {
    Shoal,
    ShoalNoRelay,
    Direct,
    Flat,
    Dht,
    Swarm,
}

pub(super) fn systems(args: &[SystemArg]) -> Vec<System> {
    args.iter()
        .map(|s| match s {
            SystemArg::Shoal => System::Shoal,
            SystemArg::ShoalNoRelay => System::ShoalNoRelay,
            SystemArg::Direct => System::Direct,
            SystemArg::Flat => System::Flat,
            SystemArg::Dht => System::Dht,
            SystemArg::Swarm => System::Swarm,
        })
        .collect()
}

#[derive(Args)]
pub(super) struct RolloutArgs {
    /// Nodes in the fleet.
    #[arg(long, default_value_t = 10_000)]
    pub(super) nodes: usize,
    /// The seed.
    #[arg(long, default_value_t = 1)]
    pub(super) seed: u64,
    /// The object's size.
    #[arg(long, default_value = "4GiB")]
    pub(super) object: String,
    /// Stripe size (the agent's default; 64 MiB gave 1.45x the bound at
    /// 10,000 nodes, 16 MiB 1.03x).
    #[arg(long, default_value = "16MiB")]
    pub(super) stripe: String,
    /// How much of the object a client has in flight at once.
    #[arg(long, default_value = "1GiB")]
    pub(super) readahead: String,
    /// Inside a rack, stripes move in pieces of this size, each with its
    /// own rack relay (0: whole stripes).
    #[arg(long, default_value = "4MiB")]
    pub(super) piece: String,
    /// The rack relay of `shoal`: `star` (one relay per rack and piece,
    /// the rest of the rack pulls from it) or `none`.
    #[arg(long, value_enum, default_value_t = RelayArg::Star)]
    pub(super) relay: RelayArg,
    /// Fewest live members a rack needs for rack relays.
    #[arg(long, default_value_t = 4)]
    pub(super) rack_relay_min: usize,
    /// V: the L2 finger set has V*b nodes.
    #[arg(long, default_value_t = 2)]
    pub(super) v: usize,
    /// Node NIC speed, each way, Gbit/s.
    #[arg(long, default_value_t = 25.0)]
    pub(super) nic_gbps: f64,
    /// Rack uplink oversubscription.
    #[arg(long, default_value_t = 4.0)]
    pub(super) rack_oversub: f64,
    /// Row uplink oversubscription.
    #[arg(long, default_value_t = 2.0)]
    pub(super) row_oversub: f64,
    /// The origin's link, Gbit/s.
    #[arg(long, default_value_t = 10.0)]
    pub(super) origin_gbps: f64,
    /// Delay to a transfer's first byte per hop, ms.
    #[arg(long, default_value_t = 0.5)]
    pub(super) hop_latency_ms: f64,
    /// Shortest time step, ms.
    #[arg(long, default_value_t = 5.0)]
    pub(super) step_ms: f64,
    /// Nodes per rack.
    #[arg(long, default_value_t = 32)]
    pub(super) nodes_per_rack: usize,
    /// Racks per row.
    #[arg(long, default_value_t = 16)]
    pub(super) racks_per_row: usize,
    /// Systems to compare.
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = [SystemArg::Shoal, SystemArg::ShoalNoRelay, SystemArg::Direct, SystemArg::Flat, SystemArg::Dht, SystemArg::Swarm])]
    pub(super) systems: Vec<SystemArg>,
    #[command(flatten)]
    pub(super) out: Output,
}

#[derive(Clone, Copy, ValueEnum)]
pub(super) enum RelayArg {
    None,
    Star,
}

impl RolloutArgs {
    pub(super) fn config(&self) -> Result<Timed> {
        if self.nodes < 2 {
            bail!("--nodes must be at least 2");
        }
        let mut c = Timed::new(self.nodes);
        c.object_bytes = size("object", &self.object)?;
        c.stripe_bytes = size("stripe", &self.stripe)?;
        for (name, v) in [
            ("nic-gbps", self.nic_gbps),
            ("origin-gbps", self.origin_gbps),
            ("rack-oversub", self.rack_oversub),
            ("row-oversub", self.row_oversub),
            ("step-ms", self.step_ms),
        ] {
            if !(v > 0.0 && v.is_finite()) {
                bail!("--{name} must be a positive number");
            }
        }
        c.readahead_bytes = size("readahead", &self.readahead)?;
        c.piece_bytes = match self.piece.as_str() {
            "0" => 0,
            p => size("piece", p)?,
        };
        c.relay = match self.relay {
            RelayArg::None => Relay::None,
            RelayArg::Star => Relay::Star,
        };
        c.rack_relay_min = self.rack_relay_min;
        if c.readahead_bytes < c.unit_bytes() {
            bail!(
                "--readahead is how much of the object is in flight, in bytes (for example 1GiB); \
                 {:?} is less than one piece or stripe",
                self.readahead
            );
        }
        c.v = self.v;
        c.topology.nodes_per_rack = self.nodes_per_rack.max(1);
        c.topology.racks_per_row = self.racks_per_row.max(1);
        c.network = Network {
            nic_gbps: self.nic_gbps,
            rack_oversub: self.rack_oversub,
            row_oversub: self.row_oversub,
            origin_gbps: self.origin_gbps,
            hop_latency_ms: self.hop_latency_ms.max(0.0),
            step_ms: self.step_ms,
        };
        Ok(c)
    }
}

#[derive(Args)]
pub(super) struct ChurnArgs {
    #[command(flatten)]
    pub(super) rollout: RolloutArgs,
    /// Churn rates, one run each: percent of the starting fleet that
    /// leaves per minute, unannounced (as many nodes join).
    #[arg(long, value_delimiter = ',', default_values_t = [0.0, 1.0, 5.0, 20.0])]
    pub(super) rates: Vec<f64>,
    /// Seconds from the start during which nodes leave and join.
    #[arg(long, default_value_t = 60.0)]
    pub(super) period: f64,
}

impl ChurnArgs {
    pub(super) fn config(&self) -> Result<Churn> {
        if self.rates.iter().any(|r| !(0.0..=100.0).contains(r)) {
            bail!("--rates are percentages between 0 and 100");
        }
        if !(self.period >= 0.0 && self.period.is_finite()) {
            bail!("--period must be a number of seconds");
        }
        let mut c = Churn::new(self.rollout.nodes);
        c.timed = self.rollout.config()?;
        c.rates = self.rates.iter().map(|r| r / 100.0).collect();
        c.period_s = self.period;
        Ok(c)
    }
}

#[derive(Args)]
pub(super) struct ScaleDownArgs {
    /// Warm nodes holding the object at time zero.
    #[arg(long, default_value_t = 8)]
    pub(super) warm: usize,
    /// Of those, how many vanish at time zero.
    #[arg(long, default_value_t = 3)]
    pub(super) vanish: usize,
    /// New nodes that join and pull.
    #[arg(long, default_value_t = 24)]
    pub(super) joiners: usize,
    /// Seconds between joins.
    #[arg(long, default_value_t = 5.0)]
    pub(super) every: f64,
    /// The object's size.
    #[arg(long, default_value = "1GiB")]
    pub(super) object: String,
    /// Stripe size.
    #[arg(long, default_value = "64MiB")]
    pub(super) stripe: String,
    /// shoal's connect timeout for a peer that does not answer, ms.
    #[arg(long, default_value_t = 50.0)]
    pub(super) connect_timeout_ms: f64,
    /// The DHT's dial timeout per dead provider, s.
    #[arg(long, default_value_t = 30.0)]
    pub(super) dht_dial_timeout: f64,
    /// The seed.
    #[arg(long, default_value_t = 1)]
    pub(super) seed: u64,
    /// Systems to compare.
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = [SystemArg::Shoal, SystemArg::Dht, SystemArg::Direct])]
    pub(super) systems: Vec<SystemArg>,
    #[command(flatten)]
    pub(super) out: Output,
}

#[derive(Args)]
pub(super) struct PartitionArgs {
    /// Nodes in the fleet.
    #[arg(long, default_value_t = 2000)]
    pub(super) nodes: usize,
    /// The object's size.
    #[arg(long, default_value = "1GiB")]
    pub(super) object: String,
    /// Percent of nodes that hold the object at the start (the others
    /// pull it at once).
    #[arg(long, default_value_t = 10.0)]
    pub(super) warm: f64,
    /// Shares of node pairs cut, one run each.
    #[arg(long, value_delimiter = ',', default_values_t = [0.0, 0.01, 0.05, 0.2])]
    pub(super) cuts: Vec<f64>,
    /// Systems to compare.
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = [SystemArg::Shoal, SystemArg::Dht])]
    pub(super) systems: Vec<SystemArg>,
    /// The seed.
    #[arg(long, default_value_t = 1)]
    pub(super) seed: u64,
    #[command(flatten)]
    pub(super) out: Output,
}
