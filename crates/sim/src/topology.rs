//! The simulated datacenter: nodes in racks, racks in rows, and what a
//! hop between two nodes costs in oversubscribed links.

use serde::Serialize;
use shoal_placement::{Labels, Member};

/// How many nodes, and how they are grouped.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Topology {
    /// Nodes in the fleet.
    pub nodes: usize,
    /// Nodes per rack (default 32).
    pub nodes_per_rack: usize,
    /// Racks per row (default 16); the number of rows follows from
    /// `nodes`.
    pub racks_per_row: usize,
}

/// How far apart two nodes are.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Distance {
    /// The same node.
    Same,
    /// Different nodes in one rack.
    Rack,
    /// Different racks in one row.
    Row,
    /// Different rows.
    Fleet,
}

/// The cost of one hop by the links it crosses: oversubscription weights
/// (default 1 inside a rack, 4 across racks in a row, 8 across rows).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Weights {
    /// Inside a rack.
    pub rack: f64,
    /// Across racks in one row.
    pub row: f64,
    /// Across rows.
    pub fleet: f64,
}

impl Default for Weights {
    fn default() -> Self {
        Weights {
            rack: 1.0,
            row: 4.0,
            fleet: 8.0,
        }
    }
}

impl Weights {
    /// The weight of a hop at `d` (zero for a node to itself).
    pub fn of(&self, d: Distance) -> f64 {
        match d {
            Distance::Same => 0.0,
            Distance::Rack => self.rack,
            Distance::Row => self.row,
            Distance::Fleet => self.fleet,
        }
    }
}

impl Topology {
    /// `nodes` nodes with the default grouping.
    pub fn new(nodes: usize) -> Topology {
        Topology {
            nodes,
            nodes_per_rack: 32,
            racks_per_row: 16,
        }
    }

    /// Rack of node `i` (global rack number).
    pub fn rack(&self, i: u32) -> usize {
        i as usize / self.nodes_per_rack.max(1)
    }

    /// Row of node `i`.
    pub fn row(&self, i: u32) -> usize {
        self.rack(i) / self.racks_per_row.max(1)
    }

    /// Rows in use.
    pub fn rows(&self) -> usize {
        self.nodes
            .div_ceil(self.nodes_per_rack.max(1) * self.racks_per_row.max(1))
    }

    /// How far apart nodes `a` and `b` are.
    pub fn distance(&self, a: u32, b: u32) -> Distance {
        if a == b {
            Distance::Same
        } else if self.rack(a) == self.rack(b) {
            Distance::Rack
        } else if self.row(a) == self.row(b) {
            Distance::Row
        } else {
            Distance::Fleet
        }
    }

    /// The members, labelled row then rack as the agent labels them. The
    /// seed is part of each name, so every seed places the fleet on the
    /// ring differently.
    pub fn members(&self, seed: u64) -> impl Iterator<Item = Member> + '_ {
        (0..self.nodes as u32).map(move |i| {
            let (row, rack) = (self.row(i), self.rack(i));
            Member::new(
                format!("s{seed}-n{i}"),
                Labels::new([format!("row-{row}"), format!("rack-{rack}")]),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distances_follow_the_grouping() {
        let t = Topology {
            nodes: 100,
            nodes_per_rack: 4,
            racks_per_row: 3,
        };
        assert_eq!(t.distance(0, 0), Distance::Same);
        assert_eq!(t.distance(0, 3), Distance::Rack);
        assert_eq!(t.distance(0, 4), Distance::Row);
        assert_eq!(t.distance(0, 11), Distance::Row);
        assert_eq!(t.distance(0, 12), Distance::Fleet);
        assert_eq!(t.rows(), 9);
        let names: Vec<_> = t.members(7).take(2).map(|m| m.name.to_string()).collect();
        assert_eq!(names, ["s7-n0", "s7-n1"]);
    }
}
