//! A flight fetched piece by piece through rack relays.
//!
//! For each piece in turn, the rack's members rank themselves in the
//! placement core ([`shoal_placement::View::rack_relays`]: consecutive
//! pieces of the object go to consecutive members); every node of the
//! rack computes the same order. The first pulls the piece along its own
//! path (H2, H1, owner, or the owner directly in a fleet with few relay
//! racks; the owner alone reads the origin) and the others pull it
//! from that relay as it arrives, so the rack imports the piece once. A
//! relay that fails (dead, silent, cut off, or refusing because it waits on
//! a rack peer itself) costs one attempt: the next-ranked member takes over
//! from the bytes held, and a node that comes first among the survivors,
//! or runs out of them, pulls the piece along its own path.
//!
//! The stripe is still written in order and verified whole: every chunk
//! is checked as it arrives, and the END frame of the last piece carries
//! the checksum the stripe entered the cluster with.

use super::{Claim, Writer, peer_fill};
use crate::flight::Flight;
use crate::node::Node;
use crate::peer::PeerError;
use crate::proto::{Failure, StripeRequest};
use std::sync::Arc;
use tokio::time::Instant;

/// Fills the stripe of `req` in pieces of `size` bytes.
pub(super) async fn fetch(
    node: &Arc<Node>,
    flight: &Flight,
    req: &StripeRequest,
    w: &mut Writer,
    deadline: Instant,
    local: bool,
    size: u64,
) -> Result<Claim, Failure> {
    let len = req.stripe.len();
    let object = req.stripe.object_key();
    let mut claim = None;
    while w.accepted() < len {
        let piece = w.accepted() / size;
        let end = ((piece + 1) * size).min(len);
        let m = node.membership.load_full();
        let relays = m
            .view
            .rack_relays(node.id, object, req.stripe.piece_in_object(size, piece));
        let mut done = false;
        if relays.first().is_some_and(|&r| r != node.id) && flight.claim_rack(piece) {
            for &relay in relays.iter().take_while(|&&r| r != node.id) {
                let Some(&addr) = m.addrs.get(&relay) else {
                    continue;
                };
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(Failure::retryable(
                        "deadline passed waiting on a rack relay",
                    ));
                }
                // The asker's own path rides along: a relay of this
                // version ignores it, one that predates `rack` forwards
                // along it as a hop would.
                let mut sub = StripeRequest::new(
                    req.stripe.clone(),
                    &req.path,
                    &req.fallbacks,
                    left.as_millis() as u64,
                );
                sub.from = w.accepted();
                sub.to = (end < len).then_some(end);
                sub.rack = true;
                sub.rank = flight.rank();
                match peer_fill(node, flight, addr, &sub, w, deadline, true).await {
                    Ok(sum) => {
                        claim = sum.map(|s| (s, addr));
                        done = true;
                        break;
                    }
                    Err(PeerError::Remote(f)) if f.fatal => return Err(f),
                    Err(e) => {
                        tracing::debug!(peer = %addr, piece, "rack relay failed: {e}");
                    }
                }
            }
        }
        if !done {
            flight.settle_path(piece);
            let before = w.accepted();
            let got = super::fetch(node, flight, req, w, deadline, local, end).await;
            node.metrics.rack_relay_bytes.inc_by(w.accepted() - before);
            claim = got?;
        }
    }
    Ok(claim)
}
