//! Sending a stripe the store holds: read in blocks off the runtime, the
//! next block read while this one is sent, each frame with its chunk
//! checksum for a peer, or the whole stripe re-hashed for a local reader.

use super::{error, range_end};
use crate::proto::{CHUNK, FIRST_CHUNK, Frame, chunk_sum};
use bytes::Bytes;
use shoal_store::Lease;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use tokio::sync::mpsc;

/// Bytes a stored stripe is read in at once: four frames per trip to the
/// blocking pool, with the next block read while this one is sent.
const READ_BLOCK: usize = 4 * CHUNK;

/// One block of a stored stripe, cut into frames off the async runtime.
struct Block {
    frames: Vec<Frame>,
    end: u64,
    hasher: Option<blake3::Hasher>,
}

/// Reads `[pos, min(pos + READ_BLOCK, len))` and cuts it into DATA frames
/// (the first of a stream small). With `sums`, each frame carries its chunk
/// checksum, so the peer writer need not hash on the runtime; `hasher`,
/// when given, is fed the block for the whole-stripe check.
fn read_block(
    file: Arc<File>,
    pos: u64,
    len: u64,
    first: bool,
    sums: bool,
    mut hasher: Option<blake3::Hasher>,
) -> tokio::task::JoinHandle<std::io::Result<Block>> {
    tokio::task::spawn_blocking(move || {
        let span = if first { FIRST_CHUNK } else { READ_BLOCK };
        let n = (span as u64).min(len - pos) as usize;
        let mut buf = vec![0u8; n];
        file.read_exact_at(&mut buf, pos)?;
        if let Some(h) = hasher.as_mut() {
            h.update(&buf);
        }
        let buf = Bytes::from(buf);
        let frames = (0..n)
            .step_by(CHUNK)
            .map(|at| {
                let chunk = buf.slice(at..(at + CHUNK).min(n));
                let sum = sums.then(|| chunk_sum(&chunk));
                Frame::Data(chunk, sum)
            })
            .collect();
        Ok(Block {
            frames,
            end: pos + n as u64,
            hasher,
        })
    })
}

/// Sends bytes `pos..to` of a stored stripe to `tx`. With `verify` (a
/// local reader), a stripe read whole is re-hashed on the way: a copy
/// that rotted on disk ends with an error frame instead of its checksum,
/// and `on_corrupt` runs. Without it (a peer), each frame carries its chunk
/// checksum instead; the peer checks the whole stripe itself.
pub async fn pump_lease(
    lease: Lease,
    pos: u64,
    to: u64,
    tx: mpsc::Sender<Frame>,
    on_corrupt: impl FnOnce() + Send,
    verify: bool,
) {
    let (len, checksum) = (lease.len, lease.checksum.0);
    let to = to.min(len);
    // Moving the file out leaves the lease's pin in `lease`, which lives
    // (and keeps the entry from eviction) until this function returns.
    let file = Arc::new(lease.file);
    let hasher = (verify && pos == 0 && to == len).then(blake3::Hasher::new);
    let mut hashed = None;
    let mut pending = (pos < to).then(|| read_block(file.clone(), pos, to, true, !verify, hasher));
    while let Some(job) = pending.take() {
        let block = match job.await.map_err(std::io::Error::other).and_then(|r| r) {
            Ok(block) => block,
            Err(e) => {
                let _ = tx.send(error(format!("reading store: {e}"))).await;
                return;
            }
        };
        if block.end < to {
            let next = read_block(file.clone(), block.end, to, false, !verify, block.hasher);
            pending = Some(next);
        } else {
            hashed = block.hasher;
        }
        for frame in block.frames {
            if tx.send(frame).await.is_err() {
                return;
            }
        }
    }
    if to < len {
        let _ = tx.send(range_end(to)).await;
        return;
    }
    if let Some(h) = hashed
        && *h.finalize().as_bytes() != checksum
    {
        on_corrupt();
        let _ = tx.send(error("stored copy is corrupt".into())).await;
        return;
    }
    let _ = tx.send(Frame::End { len, checksum }).await;
}
