//! What one demo round measured, its checks, and its table.

use super::fleet::Counters;
use anyhow::{Result, bail};
use serde::Serialize;

/// One node's pull in a round.
#[derive(Debug, Serialize)]
pub struct NodeRow {
    /// The node.
    pub node: String,
    /// Whether the demo killed it in this round.
    pub killed: bool,
    /// Seconds from the round's start until its last byte, if it finished.
    pub seconds: Option<f64>,
    /// Bytes its client received.
    pub bytes: u64,
    /// The SHA-256 of what its client received, if it finished.
    pub sha256: Option<String>,
    /// Why its pull failed, if it did.
    pub error: Option<String>,
    /// Where its agent's bytes came from in this round (none for a killed
    /// node).
    pub counted: Option<Counters>,
}

/// One round.
#[derive(Debug, Serialize)]
pub struct Round {
    /// The object.
    pub object: String,
    /// Its size.
    pub size: u64,
    /// Its digest, when the demo knows it.
    pub digest: Option<String>,
    /// One row per node.
    pub nodes: Vec<NodeRow>,
    /// When the victim was killed, seconds into the round.
    pub killed_at_s: Option<f64>,
    /// Bytes the embedded origin sent in this round, counted at the
    /// origin (`None` with an external origin).
    pub origin_sent: Option<u64>,
    /// Bytes the surviving agents received from the origin, by their own
    /// counters.
    pub agents_origin_bytes: f64,
    /// Origin bytes over the object's size: counted at the origin when it
    /// is embedded, else by the agents.
    pub amplification: f64,
}

impl Round {
    /// Sums a round up.
    pub fn new(
        object: &str,
        size: u64,
        digest: Option<String>,
        nodes: Vec<NodeRow>,
        killed_at_s: Option<f64>,
        sent_before: Option<u64>,
        sent_after: Option<u64>,
    ) -> Round {
        let origin_sent = sent_after.zip(sent_before).map(|(a, b)| a - b);
        let agents_origin_bytes = nodes
            .iter()
            .filter_map(|n| n.counted.map(|c| c.origin))
            .sum();
        let origin = origin_sent.map_or(agents_origin_bytes, |b| b as f64);
        Round {
            object: object.to_owned(),
            size,
            digest,
            nodes,
            killed_at_s,
            origin_sent,
            agents_origin_bytes,
            amplification: origin / size.max(1) as f64,
        }
    }

    /// Fails unless every node that was not killed received the whole
    /// object, and all of them the same bytes (the known digest, if any).
    pub fn check(&self) -> Result<()> {
        let want = self
            .digest
            .clone()
            .or_else(|| self.nodes.iter().find_map(|n| n.sha256.clone()));
        for n in self.nodes.iter().filter(|n| !n.killed) {
            if let Some(e) = &n.error {
                bail!("{}: the pull of {} failed: {e}", n.node, self.object);
            }
            if n.bytes != self.size || n.sha256 != want {
                bail!(
                    "{}: received {} of {} bytes of {}, sha256 {:?}, expected {:?}",
                    n.node,
                    n.bytes,
                    self.size,
                    self.object,
                    n.sha256,
                    want
                );
            }
        }
        Ok(())
    }

    /// The round as text: a title, one row per node, the origin's count.
    pub fn text(&self, title: &str) -> String {
        let mib = |b: f64| format!("{:.1} MiB", b / f64::from(1u32 << 20));
        let mut out = format!(
            "## {title}\n\n| node | time | MiB/s | served from its store | fetched from peers | fetched from the origin | bytes |\n| --- | ---: | ---: | ---: | ---: | ---: | --- |\n"
        );
        for n in &self.nodes {
            let (time, rate) = match (n.killed, n.seconds) {
                (true, _) => (
                    format!("killed at {:.2} s", self.killed_at_s.unwrap_or(0.0)),
                    "-".to_owned(),
                ),
                (false, Some(s)) => (
                    format!("{s:.2} s"),
                    format!(
                        "{:.0}",
                        n.bytes as f64 / f64::from(1u32 << 20) / s.max(1e-9)
                    ),
                ),
                (false, None) => ("failed".to_owned(), "-".to_owned()),
            };
            let c = n.counted.unwrap_or_default();
            let (store, peers, origin) = match n.counted {
                Some(_) => (mib(c.store), mib(c.peers), mib(c.origin)),
                None => ("-".into(), "-".into(), "-".into()),
            };
            let ok = if n.killed {
                "-".to_owned()
            } else if n.error.is_none() {
                "whole, digest ok".to_owned()
            } else {
                "failed".to_owned()
            };
            out.push_str(&format!(
                "| {} | {time} | {rate} | {store} | {peers} | {origin} | {ok} |\n",
                n.node
            ));
        }
        let counted = match self.origin_sent {
            Some(b) => format!("The origin sent {} for it", mib(b as f64)),
            None => format!(
                "The agents received {} from the origin",
                mib(self.agents_origin_bytes)
            ),
        };
        out.push_str(&format!(
            "\n{counted}: amplification {:.2} (1.00 = the object crossed the origin link once).\n\
             Per agent, in this round: bytes it served out of its store (to its own client or to peers), \
             bytes it fetched from peers (for its client, as a hop, or as a replica) and from the origin.\n",
            self.amplification
        ));
        out
    }
}
