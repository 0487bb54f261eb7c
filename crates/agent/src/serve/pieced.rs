//! A flight fetched piece by piece through rack relays.
//!
//! For each piece, the rack's members rank themselves in the placement
//! core ([`shoal_placement::View::relay_plan`]: the pieces of an object are
//! dealt out so that each member's upload, its stripes' owner duty
//! included, comes out even); every node of the rack computes the same
//! order. The first pulls the piece along its own path (H2, H1,
//! owner, or the owner directly in a fleet with few relay racks; the owner
//! alone reads the origin) and the others pull it from that relay as it
//! arrives, so the rack imports the piece once. A relay that fails (dead,
//! silent, cut off, or refusing because it waits on a rack peer itself)
//! costs one attempt: the next-ranked member takes over from the bytes
//! held, and a node that comes first among the survivors, or runs out of
//! them, pulls the piece along its own path.
//!
//! Every piece of the stripe is fetched at once, each filling the file
//! from its own start, so a relay serves its piece as soon as it arrives
//! rather than after the pieces before it. Every chunk is checked as it
//! arrives; the whole stripe is hashed once every piece is in and checked
//! against the checksum the END frame of the last piece carries, the one
//! the stripe entered the cluster with.

use super::writer::Writer;
use super::{Claim, peer_fill};
use crate::flight::Flight;
use crate::node::Node;
use crate::peer::PeerError;
use crate::proto::{Failure, StripeRequest};
use futures_util::future::try_join_all;
use std::fs::File;
use std::sync::Arc;
use tokio::time::Instant;

/// Fills the stripe of `req` in pieces of `size` bytes, all at once, into
/// `file`. Returns the claim of the last piece's source.
pub(super) async fn fetch(
    node: &Arc<Node>,
    flight: &Flight,
    req: &StripeRequest,
    file: &Arc<File>,
    deadline: Instant,
    local: bool,
    size: u64,
) -> Result<Claim, Failure> {
    let pieces = req.stripe.len().div_ceil(size.max(1));
    let fills = (0..pieces).map(|piece| {
        let w = Writer::piece(file.clone(), piece * size);
        fetch_piece(node, flight, req, w, deadline, local, (piece, size))
    });
    let claims = try_join_all(fills).await?;
    Ok(claims.last().copied().flatten())
}

/// Fills piece `piece` (of `size` bytes) through `w`: from its rack
/// relays in rank order, else along this node's path.
async fn fetch_piece(
    node: &Arc<Node>,
    flight: &Flight,
    req: &StripeRequest,
    mut w: Writer,
    deadline: Instant,
    local: bool,
    (piece, size): (u64, u64),
) -> Result<Claim, Failure> {
    let len = req.stripe.len();
    let end = ((piece + 1) * size).min(len);
    let m = node.membership.load_full();
    // Pieces are counted in the configured size, which a short last stripe
    // cuts but every stripe of the object shares.
    let unit = node.cfg.piece_size.max(size);
    let relays = node
        .relay_plan(&m, &req.stripe, unit)
        .relays(&m.view, req.stripe.piece_in_object(unit, piece));
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
            // The asker's own path rides along: a relay of this version
            // ignores it, one that predates `rack` forwards along it as a
            // hop would.
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
            match peer_fill(node, flight, addr, &sub, &mut w, deadline, true).await {
                Ok(sum) => {
                    w.flush(flight).await?;
                    return Ok(sum.map(|s| (s, addr)));
                }
                Err(PeerError::Remote(f)) if f.fatal => return Err(f),
                Err(e) => {
                    tracing::debug!(peer = %addr, piece, "rack relay failed: {e}");
                }
            }
        }
    }
    flight.settle_path(piece);
    let before = w.accepted();
    let got = super::fetch(node, flight, req, &mut w, deadline, local, end).await;
    node.metrics.rack_relay_bytes.inc_by(w.accepted() - before);
    let claim = got?;
    w.flush(flight).await?;
    Ok(claim)
}
