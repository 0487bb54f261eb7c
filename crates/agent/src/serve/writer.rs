//! Writes a flight's verified bytes into its file: one [`Writer`] for a
//! stripe fetched whole (hashing it on the way), one per piece for a
//! stripe fetched in pieces at once (hashed whole by [`checksum_of`] when
//! every piece is in).

use crate::flight::Flight;
use crate::proto::{CHUNK, ChunkSum, Failure};
use bytes::{Bytes, BytesMut};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

/// One fill front of a flight's file: it writes from `start` on, in order.
pub(super) struct Writer {
    file: Arc<File>,
    start: u64,
    written: u64,
    /// The running hash of the stripe, for a writer that fills it whole.
    hasher: Option<blake3::Hasher>,
    hashing: bool,
    buf: BytesMut,
}

impl Writer {
    /// A writer of the whole stripe, hashing it as it goes.
    pub(super) fn whole(file: Arc<File>) -> Writer {
        Writer {
            hashing: true,
            ..Writer::piece(file, 0)
        }
    }

    /// A writer of the piece that starts at byte `start`; it does not hash.
    pub(super) fn piece(file: Arc<File>, start: u64) -> Writer {
        Writer {
            file,
            start,
            written: start,
            hasher: None,
            hashing: false,
            buf: BytesMut::new(),
        }
    }

    /// Appends verified bytes, flushing whole chunks to disk, and the very
    /// first bytes at once (see [`crate::proto::FIRST_CHUNK`]). A chunk
    /// from a peer (`sum` given) is written at once and recorded with its
    /// checksum, so readers pass it on without hashing it again.
    pub(super) async fn push(
        &mut self,
        flight: &Flight,
        bytes: &[u8],
        sum: Option<ChunkSum>,
    ) -> Result<(), Failure> {
        if let Some(sum) = sum {
            self.flush(flight).await?;
            flight.record_segment(self.written, bytes.len(), sum);
            self.buf.extend_from_slice(bytes);
            return self.flush(flight).await;
        }
        self.buf.extend_from_slice(bytes);
        if self.buf.len() >= CHUNK || self.written == self.start {
            self.flush(flight).await?;
        }
        Ok(())
    }

    /// The stripe offset this writer has reached: bytes written or
    /// buffered.
    pub(super) fn accepted(&self) -> u64 {
        self.written + self.buf.len() as u64
    }

    /// Writes what is buffered and publishes progress.
    pub(super) async fn flush(&mut self, flight: &Flight) -> Result<(), Failure> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let bytes: Bytes = self.buf.split().freeze();
        let (file, pos, n) = (self.file.clone(), self.written, bytes.len() as u64);
        let hasher = self.hashing.then(|| self.hasher.take().unwrap_or_default());
        let hasher = tokio::task::spawn_blocking(move || {
            file.write_all_at(&bytes, pos)?;
            Ok::<_, std::io::Error>(hasher.map(|mut h| {
                h.update(&bytes);
                h
            }))
        })
        .await
        .map_err(|e| Failure::retryable(e.to_string()))?
        .map_err(|e| Failure::retryable(format!("writing stripe: {e}")))?;
        self.hasher = hasher;
        self.written += n;
        flight.advance(self.start, self.written);
        Ok(())
    }

    /// The BLAKE3 of what a whole-stripe writer wrote.
    pub(super) fn checksum(&self) -> [u8; 32] {
        *self
            .hasher
            .clone()
            .unwrap_or_default()
            .finalize()
            .as_bytes()
    }
}

/// Bytes read at once when hashing a file.
const HASH_BLOCK: usize = 4 * CHUNK;

/// The BLAKE3 of the first `len` bytes of `file`, read off the runtime.
pub(super) async fn checksum_of(file: Arc<File>, len: u64) -> Result<[u8; 32], Failure> {
    tokio::task::spawn_blocking(move || {
        let mut hasher = blake3::Hasher::new();
        let mut buf = vec![0u8; HASH_BLOCK];
        let mut pos = 0u64;
        while pos < len {
            let n = (HASH_BLOCK as u64).min(len - pos) as usize;
            let block = &mut buf[..n];
            file.read_exact_at(block, pos)?;
            hasher.update(block);
            pos += n as u64;
        }
        Ok::<_, std::io::Error>(*hasher.finalize().as_bytes())
    })
    .await
    .map_err(|e| Failure::retryable(e.to_string()))?
    .map_err(|e| Failure::retryable(format!("reading the stripe back: {e}")))
}
