//! The timed model's network: every node's NIC (up and down), each rack's
//! and each row's uplink (up and down, oversubscribed), and the origin's
//! link. A transfer is a flow over the links between its ends; each time
//! step shares every link equally among the flows crossing it, and a flow
//! moves at the smallest share along its way (a one-pass fair share, a
//! little below max-min fairness when some flows are held back
//! elsewhere).

use crate::topology::{Distance, Topology};
use serde::Serialize;

/// Link speeds and delays.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Network {
    /// Each node's NIC, each way, in Gbit/s (default 25).
    pub nic_gbps: f64,
    /// Rack uplink oversubscription: the uplink carries the rack's NICs
    /// divided by this (default 4).
    pub rack_oversub: f64,
    /// Row uplink oversubscription over its racks' uplinks (default 2).
    pub row_oversub: f64,
    /// The origin's link in Gbit/s (default 10).
    pub origin_gbps: f64,
    /// Delay before a transfer's first byte, per hop, in ms (connect and
    /// request; default 0.5).
    pub hop_latency_ms: f64,
    /// The time step in ms (default 5).
    pub step_ms: f64,
}

impl Default for Network {
    fn default() -> Self {
        Network {
            nic_gbps: 25.0,
            rack_oversub: 4.0,
            row_oversub: 2.0,
            origin_gbps: 10.0,
            hop_latency_ms: 0.5,
            step_ms: 5.0,
        }
    }
}

/// Bytes per second in `gbps` Gbit/s.
pub fn bytes_per_s(gbps: f64) -> f64 {
    gbps * 1e9 / 8.0
}

/// Where a flow starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum End {
    /// A node.
    Node(u32),
    /// The origin, outside every row.
    Origin,
}

/// The links of a fleet and how many flows cross each in this step.
pub struct Links {
    cap: Vec<f64>,
    count: Vec<u32>,
    nodes: usize,
    racks: usize,
    rows: usize,
}

/// At most seven links on a flow's way: NIC up, rack up, row up, row
/// down, rack down, NIC down (or the origin's link instead of the first
/// three).
pub type Way = ([u32; 7], u8);

impl Links {
    /// The links of `topo` at the speeds of `net`.
    pub fn new(topo: &Topology, net: &Network) -> Links {
        let nodes = topo.nodes;
        let racks = nodes.div_ceil(topo.nodes_per_rack.max(1));
        let rows = topo.rows();
        let nic = bytes_per_s(net.nic_gbps);
        let rack = nic * topo.nodes_per_rack as f64 / net.rack_oversub.max(1e-9);
        let row = rack * topo.racks_per_row as f64 / net.row_oversub.max(1e-9);
        let mut cap = Vec::with_capacity(2 * (nodes + racks + rows) + 1);
        cap.extend(std::iter::repeat_n(nic, 2 * nodes));
        cap.extend(std::iter::repeat_n(rack, 2 * racks));
        cap.extend(std::iter::repeat_n(row, 2 * rows));
        cap.push(bytes_per_s(net.origin_gbps));
        Links {
            count: vec![0; cap.len()],
            cap,
            nodes,
            racks,
            rows,
        }
    }

    fn up(&self, n: u32) -> u32 {
        n
    }
    fn down(&self, n: u32) -> u32 {
        (self.nodes + n as usize) as u32
    }
    fn rack_up(&self, r: usize) -> u32 {
        (2 * self.nodes + r) as u32
    }
    fn rack_down(&self, r: usize) -> u32 {
        (2 * self.nodes + self.racks + r) as u32
    }
    fn row_up(&self, w: usize) -> u32 {
        (2 * (self.nodes + self.racks) + w) as u32
    }
    fn row_down(&self, w: usize) -> u32 {
        (2 * (self.nodes + self.racks) + self.rows + w) as u32
    }
    fn origin(&self) -> u32 {
        (self.cap.len() - 1) as u32
    }

    /// The links a flow from `src` to node `dst` crosses.
    pub fn way(&self, topo: &Topology, src: End, dst: u32) -> Way {
        let mut w = [0u32; 7];
        let mut n = 0usize;
        let mut push = |l: u32| {
            w[n] = l;
            n += 1;
        };
        let (rack, row) = (topo.rack(dst), topo.row(dst));
        match src {
            End::Origin => {
                push(self.origin());
                push(self.row_down(row));
                push(self.rack_down(rack));
            }
            End::Node(s) => {
                push(self.up(s));
                let d = topo.distance(s, dst);
                if d >= Distance::Row {
                    push(self.rack_up(topo.rack(s)));
                    push(self.rack_down(rack));
                }
                if d == Distance::Fleet {
                    push(self.row_up(topo.row(s)));
                    push(self.row_down(row));
                }
            }
        }
        push(self.down(dst));
        (w, n as u8)
    }

    /// Forgets the last step's counts.
    pub fn clear(&mut self) {
        self.count.fill(0);
    }

    /// Counts a flow on its links.
    pub fn load(&mut self, way: &Way) {
        for &l in &way.0[..way.1 as usize] {
            self.count[l as usize] += 1;
        }
    }

    /// A flow's rate this step: the smallest share along its way.
    pub fn rate(&self, way: &Way) -> f64 {
        way.0[..way.1 as usize]
            .iter()
            .map(|&l| self.cap[l as usize] / f64::from(self.count[l as usize].max(1)))
            .fold(f64::INFINITY, f64::min)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ways_cross_the_links_between_the_ends() {
        let t = Topology {
            nodes: 64,
            nodes_per_rack: 4,
            racks_per_row: 4,
        };
        let l = Links::new(&t, &Network::default());
        assert_eq!(l.way(&t, End::Node(0), 1).1, 2, "NIC up, NIC down");
        assert_eq!(l.way(&t, End::Node(0), 5).1, 4, "and both rack uplinks");
        assert_eq!(l.way(&t, End::Node(0), 20).1, 6, "and both row uplinks");
        assert_eq!(l.way(&t, End::Origin, 20).1, 4);
        let mut l = l;
        let a = l.way(&t, End::Node(0), 1);
        let b = l.way(&t, End::Node(0), 2);
        l.load(&a);
        l.load(&b);
        // Two flows share node 0's NIC.
        assert!((l.rate(&a) - bytes_per_s(25.0) / 2.0).abs() < 1.0);
    }
}
