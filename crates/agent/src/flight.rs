//! Single flight: one fetch per stripe per node, however many callers.
//!
//! A [`Flight`] fills a file (a store reservation, or scratch space when the
//! store is full) and publishes how far it has got: one fill front for a
//! stripe fetched whole, one per piece for a stripe fetched in pieces
//! through rack relays (each piece fills in order from its start, the
//! pieces at once). Every caller, the first one included, is a reader of
//! that file: it sends the bytes that have arrived from its position on,
//! then follows the writers, then sends the stripe's checksum once the
//! fill has verified it. Late joiners therefore read the prefix from disk
//! and memory stays bounded by one chunk per reader, whatever the stripe
//! size. The fetch runs in its own task, so it completes (and caches) even
//! when the caller that started it goes away. A stripe the store already
//! holds is sent by [`pump_lease`] (`flight/lease.rs`).

use crate::proto::{CHUNK, ChunkSum, FIRST_CHUNK, Failure, Frame};
use bytes::Bytes;
use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::{Arc, Mutex, OnceLock};
use tokio::sync::{mpsc, watch};

mod lease;
pub use lease::pump_lease;

/// How often a reader waiting on its writer tells its caller it is alive.
pub use crate::timing::KEEPALIVE_EVERY;

/// Where a flight stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FlightState {
    /// Reserving space; no bytes yet.
    Starting,
    /// Bytes are arriving, verified chunk by chunk.
    Running {
        /// Bytes in the file from the start of the stripe on, with no gap
        /// (later pieces may hold more: see [`Flight::available`]).
        written: u64,
    },
    /// Complete and verified against this checksum.
    Done {
        /// BLAKE3 of the stripe.
        checksum: [u8; 32],
    },
    /// Given up: readers send the failure on as an error frame.
    Failed(Failure),
}

/// How a pieced flight gets one piece (see `crate::serve::pieced`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PieceSource {
    /// Along this node's own path: a rack peer asked for it.
    Path,
    /// From a rack peer that relays it.
    Rack,
}

/// One stripe being fetched on this node.
pub struct Flight {
    file: OnceLock<Arc<File>>,
    len: u64,
    rank: u8,
    /// Fetched piece by piece through rack relays (`Some(piece size)`), or
    /// whole along the path.
    pieces: Option<u64>,
    /// For a pieced flight, the pieces whose source is settled.
    sources: Mutex<HashMap<u64, PieceSource>>,
    /// Per piece (one for a flight fetched whole): the end of the bytes
    /// written from the piece's start on.
    filled: Mutex<Vec<u64>>,
    state: watch::Sender<FlightState>,
    /// Chunks written exactly as a peer sent them, by offset: their length
    /// and the checksum they were verified against.
    segments: Mutex<BTreeMap<u64, (usize, ChunkSum)>>,
}

impl Flight {
    /// A flight for a stripe of `len` bytes, of the given rank (see
    /// [`crate::proto::StripeRequest::rank`]), fetched whole along the path
    /// or, with `pieces`, in pieces of that size through rack relays.
    pub fn new(len: u64, rank: u8, pieces: Option<u64>) -> Arc<Flight> {
        let pieces = pieces.map(|p| p.max(1));
        let span = pieces.unwrap_or(len).max(1);
        Arc::new(Flight {
            file: OnceLock::new(),
            len,
            rank,
            pieces,
            sources: Mutex::new(HashMap::new()),
            filled: Mutex::new((0..len.div_ceil(span).max(1)).map(|i| i * span).collect()),
            state: watch::Sender::new(FlightState::Starting),
            segments: Mutex::new(BTreeMap::new()),
        })
    }

    /// The bytes one fill front covers: a piece, or the whole stripe.
    fn span(&self) -> u64 {
        self.pieces.unwrap_or(self.len).max(1)
    }

    /// Records that `len` bytes at `offset` are one chunk verified against
    /// `sum`. Call before publishing the progress that covers them.
    pub fn record_segment(&self, offset: u64, len: usize, sum: ChunkSum) {
        self.segments
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(offset, (len, sum));
    }

    /// The recorded chunk starting at `offset`, if any.
    pub fn segment_at(&self, offset: u64) -> Option<(usize, ChunkSum)> {
        let segments = self.segments.lock().unwrap_or_else(|p| p.into_inner());
        segments.get(&offset).copied()
    }

    /// Hands the file to readers and starts the flight.
    pub fn start(&self, file: File) {
        let _ = self.file.set(Arc::new(file));
        self.state.send_replace(FlightState::Running { written: 0 });
    }

    /// Publishes that the piece starting at `start` (the stripe's start
    /// for a flight fetched whole) is written up to byte `end`, waking
    /// readers.
    pub fn advance(&self, start: u64, end: u64) {
        let span = self.span();
        let written = {
            let mut filled = self.filled.lock().unwrap_or_else(|p| p.into_inner());
            let piece_end = (start / span * span + span).min(self.len);
            if let Some(f) = filled.get_mut((start / span) as usize) {
                *f = (*f).max(end.min(piece_end));
            }
            contiguous(&filled, span, self.len, 0)
        };
        self.state.send_replace(FlightState::Running { written });
    }

    /// The end of the bytes in the file from `pos` on with no gap: `pos`
    /// itself when the byte at `pos` has not arrived.
    pub fn available(&self, pos: u64) -> u64 {
        match &*self.state.borrow() {
            FlightState::Done { .. } => return self.len,
            FlightState::Running { .. } => {}
            _ => return pos,
        }
        let filled = self.filled.lock().unwrap_or_else(|p| p.into_inner());
        contiguous(&filled, self.span(), self.len, pos)
    }

    /// Publishes that the stripe is complete and verified as `checksum`.
    pub fn done(&self, checksum: [u8; 32]) {
        self.state.send_replace(FlightState::Done { checksum });
    }

    /// Publishes that the flight gave up; readers pass the failure on.
    pub fn fail(&self, failure: Failure) {
        self.state.send_replace(FlightState::Failed(failure));
    }

    /// The piece size of a pieced flight; `None` for a flight fetched
    /// whole along the path, which never waits on a rack peer.
    pub fn pieces(&self) -> Option<u64> {
        self.pieces
    }

    /// A rack peer asks this node to relay the piece holding byte `from`:
    /// true if the flight will fetch it along its own path (or has it
    /// already), false if it is waiting on a rack peer for it, so that
    /// two nodes whose views differ never wait on each other.
    pub fn claim_path(&self, from: u64) -> bool {
        let Some(size) = self.pieces else {
            return true;
        };
        let piece = from / size;
        if self.available(piece * size) >= ((piece + 1) * size).min(self.len) {
            return true;
        }
        let mut sources = self.sources.lock().unwrap_or_else(|p| p.into_inner());
        *sources.entry(piece).or_insert(PieceSource::Path) == PieceSource::Path
    }

    /// The fill is about to ask a rack peer for `piece`: true if it may,
    /// false if a rack peer already asked this node for it (then the fill
    /// fetches it along its path instead).
    pub fn claim_rack(&self, piece: u64) -> bool {
        let mut sources = self.sources.lock().unwrap_or_else(|p| p.into_inner());
        *sources.entry(piece).or_insert(PieceSource::Rack) == PieceSource::Rack
    }

    /// The fill fetches `piece` along its own path (every rack peer before
    /// it failed, or none ranks above it): rack peers may now wait on it.
    pub fn settle_path(&self, piece: u64) {
        let mut sources = self.sources.lock().unwrap_or_else(|p| p.into_inner());
        sources.insert(piece, PieceSource::Path);
    }

    /// Its rank: requests of a higher rank may join it.
    pub fn rank(&self) -> u8 {
        self.rank
    }

    /// The stripe's length.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the stripe is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether it has given up (it may linger in the flights map until its
    /// task removes it; nobody should join it then).
    pub fn failed(&self) -> bool {
        matches!(*self.state.borrow(), FlightState::Failed(_))
    }

    /// The current state.
    pub fn state(&self) -> FlightState {
        self.state.borrow().clone()
    }

    /// Waits for the flight to end: true if it completed and verified,
    /// false if it failed or was abandoned.
    pub async fn settled(&self) -> bool {
        let mut rx = self.state.subscribe();
        let done = rx
            .wait_for(|s| matches!(s, FlightState::Done { .. } | FlightState::Failed(_)))
            .await;
        matches!(done.as_deref(), Ok(FlightState::Done { .. }))
    }
}

/// Walks the fill fronts (`filled[i]` is how far piece `i`, of `span`
/// bytes, is written) from `pos` to the first byte not yet written.
fn contiguous(filled: &[u64], span: u64, len: u64, mut pos: u64) -> u64 {
    while let Some(&f) = filled.get((pos / span) as usize) {
        let piece_end = (pos / span * span + span).min(len);
        if f <= pos {
            break;
        }
        pos = f;
        if f < piece_end {
            break;
        }
    }
    pos
}

async fn read_at(file: Arc<File>, pos: u64, n: usize) -> std::io::Result<Bytes> {
    tokio::task::spawn_blocking(move || {
        let mut buf = vec![0u8; n];
        file.read_exact_at(&mut buf, pos)?;
        Ok(Bytes::from(buf))
    })
    .await
    .map_err(std::io::Error::other)?
}

/// How many bytes the next DATA frame of a stream may carry.
fn frame_size(first: bool) -> usize {
    if first { FIRST_CHUNK } else { CHUNK }
}

fn error(message: String) -> Frame {
    Frame::Error(Failure::retryable(message))
}

/// The END frame of a range that stops at `to`, short of the stripe's end:
/// its length, and no checksum (see [`crate::proto::StripeRequest::to`]).
pub fn range_end(to: u64) -> Frame {
    Frame::End {
        len: to,
        checksum: [0; 32],
    }
}

/// Sends the flight's bytes `from..to` to `tx` as frames, following the
/// writer, until the end frame, an error frame, or the receiver leaving.
pub async fn pump_flight(flight: Arc<Flight>, mut pos: u64, to: u64, tx: mpsc::Sender<Frame>) {
    let mut rx = flight.state.subscribe();
    let mut first = true;
    let to = to.min(flight.len);
    // When the caller last got a frame: a reader waiting on a range the
    // writers have not reached hears a keepalive every KEEPALIVE_EVERY,
    // however busy they are elsewhere in the stripe.
    let mut last_sent = tokio::time::Instant::now();
    loop {
        let state = rx.borrow_and_update().clone();
        let (limit, finished) = match &state {
            FlightState::Starting => (0, None),
            FlightState::Running { .. } => (flight.available(pos).min(to), None),
            FlightState::Done { checksum } => (to, Some(*checksum)),
            FlightState::Failed(f) => {
                let _ = tx.send(Frame::Error(f.clone())).await;
                return;
            }
        };
        if pos >= to && to < flight.len {
            let _ = tx.send(range_end(to)).await;
            return;
        }
        if pos < limit {
            let Some(file) = flight.file.get().cloned() else {
                let _ = tx.send(error("flight has no file".into())).await;
                return;
            };
            // A segment the writer received whole goes out as it came,
            // with the checksum it was verified against.
            let (n, sum) = match flight.segment_at(pos) {
                Some((len, sum)) if pos + len as u64 <= limit => (len, Some(sum)),
                _ => (frame_size(first).min((limit - pos) as usize), None),
            };
            first = false;
            match read_at(file, pos, n).await {
                Ok(bytes) => {
                    pos += n as u64;
                    if tx.send(Frame::Data(bytes, sum)).await.is_err() {
                        return;
                    }
                    last_sent = tokio::time::Instant::now();
                }
                Err(e) => {
                    let _ = tx.send(error(format!("reading flight: {e}"))).await;
                    return;
                }
            }
            continue;
        }
        if let Some(checksum) = finished {
            let _ = tx
                .send(Frame::End {
                    len: flight.len,
                    checksum,
                })
                .await;
            return;
        }
        let wait = KEEPALIVE_EVERY.saturating_sub(last_sent.elapsed());
        match tokio::time::timeout(wait, rx.changed()).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => {
                let _ = tx.send(error("flight abandoned".into())).await;
                return;
            }
            Err(_) => {
                if tx.send(Frame::KeepAlive).await.is_err() {
                    return;
                }
                last_sent = tokio::time::Instant::now();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two nodes whose views name each other as a piece's relay each ask
    /// the other: whichever settles its source first wins, and the other
    /// is refused, so neither waits on the other. A whole-stripe flight
    /// never waits on a rack peer, so it takes every piece.
    #[test]
    fn a_piece_is_relayed_or_waited_for_never_both() {
        let f = Flight::new(1000, 3, Some(100));
        assert!(f.claim_rack(2), "the fill may ask a rack peer for piece 2");
        assert!(
            !f.claim_path(250),
            "so a rack peer's ask for piece 2 is refused"
        );
        assert!(
            f.claim_path(450),
            "piece 4 is still open: this node relays it"
        );
        assert!(!f.claim_rack(4), "and its fill fetches it along its path");
        assert!(f.claim_path(499), "asking again for the same piece is fine");
        f.advance(200, 300);
        assert!(f.claim_path(250), "a piece already written is served");
        let whole = Flight::new(1000, 3, None);
        assert!(whole.claim_path(250));
    }

    /// Pieces fill at once, each from its own start: a reader sees the
    /// bytes from its position up to the first gap, and the stripe's
    /// prefix grows only as the gaps close.
    #[test]
    fn pieces_fill_out_of_order_and_readers_see_up_to_the_first_gap() {
        let f = Flight::new(1000, 3, Some(300));
        f.start(tempfile());
        f.advance(300, 450);
        assert_eq!(f.available(0), 0, "piece 0 has nothing yet");
        assert_eq!(f.available(300), 450);
        assert_eq!(f.available(320), 450);
        assert_eq!(f.available(450), 450);
        f.advance(900, 1000);
        assert_eq!(f.available(900), 1000, "the short last piece is whole");
        f.advance(0, 300);
        assert_eq!(f.available(0), 450, "piece 0 runs on into piece 1");
        assert_eq!(f.state(), FlightState::Running { written: 450 });
        f.advance(300, 600);
        f.advance(600, 2000);
        assert_eq!(f.available(0), 1000, "an end past the piece is clamped");
        assert_eq!(f.state(), FlightState::Running { written: 1000 });
        let whole = Flight::new(1000, 3, None);
        whole.start(tempfile());
        whole.advance(0, 700);
        assert_eq!((whole.available(0), whole.available(650)), (700, 700));
        assert_eq!(whole.available(800), 800, "beyond the front: nothing");
    }

    fn tempfile() -> File {
        tempfile::tempfile().unwrap_or_else(|e| panic!("temp file: {e}"))
    }

    /// A reader of a later piece hears keepalives while the writers are
    /// busy elsewhere in the stripe: progress that is not its own does
    /// not count as news for its caller.
    #[tokio::test(start_paused = true)]
    async fn a_reader_waiting_on_its_range_hears_keepalives_while_other_pieces_fill() {
        let f = Flight::new(4 * CHUNK as u64, 3, Some(CHUNK as u64));
        f.start(tempfile());
        let (tx, mut rx) = mpsc::channel(8);
        tokio::spawn(pump_flight(
            f.clone(),
            3 * CHUNK as u64,
            4 * CHUNK as u64,
            tx,
        ));
        let writer = tokio::spawn({
            let f = f.clone();
            async move {
                for i in 1..=40u64 {
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    f.advance(0, i * 1000);
                }
            }
        });
        let start = tokio::time::Instant::now();
        let got = tokio::time::timeout(KEEPALIVE_EVERY * 2, rx.recv()).await;
        assert!(
            matches!(got, Ok(Some(Frame::KeepAlive))),
            "a keepalive within two periods, got {got:?} after {:?}",
            start.elapsed()
        );
        writer.abort();
    }

    #[tokio::test]
    async fn settled_says_how_a_flight_ended() {
        let ok = Flight::new(10, 3, None);
        let waiter = tokio::spawn({
            let ok = ok.clone();
            async move { ok.settled().await }
        });
        ok.advance(0, 5);
        ok.done([7; 32]);
        assert!(waiter.await.unwrap_or(false));
        let bad = Flight::new(10, 3, None);
        bad.fail(Failure::retryable("gone"));
        assert!(!bad.settled().await);
    }
}
