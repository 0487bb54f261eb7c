//! The wire framing of a stripe response: frames, chunk checksums and a
//! decoder that reassembles frames from body chunks of any size.

use super::{Failure, ProtoError};
use bytes::{Buf, BufMut, Bytes, BytesMut};
use std::collections::VecDeque;

/// Bytes per data frame: a hop relays after this much has arrived.
pub const CHUNK: usize = 256 * 1024;
/// The first DATA frame of a stream is at most this big. A hop passes
/// bytes on only once a whole frame has arrived and been checked, so a
/// small first frame lets the first byte cross each hop quickly, while the
/// big frames after it keep the per-frame cost low.
pub const FIRST_CHUNK: usize = 32 * 1024;
/// Largest frame payload accepted from a peer.
const MAX_FRAME: usize = 4 * 1024 * 1024;
/// Bytes of BLAKE3 carried with each chunk.
const CHUNK_SUM: usize = 16;

/// The checksum that travels with a chunk: the first 16 bytes of its
/// BLAKE3.
pub type ChunkSum = [u8; CHUNK_SUM];

/// A chunk's checksum.
pub fn chunk_sum(chunk: &[u8]) -> ChunkSum {
    let mut sum = [0u8; CHUNK_SUM];
    sum.copy_from_slice(&blake3::hash(chunk).as_bytes()[..CHUNK_SUM]);
    sum
}

/// One frame of a stripe response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame {
    /// Chunk bytes, and the chunk's checksum prefix when it is already
    /// known: a received chunk carries the prefix it was verified against,
    /// so a relay passes it on instead of hashing the chunk again.
    Data(Bytes, Option<ChunkSum>),
    /// Still working.
    KeepAlive,
    /// The stripe is complete: its length and BLAKE3.
    End {
        /// Stripe length.
        len: u64,
        /// BLAKE3 of the whole stripe.
        checksum: [u8; 32],
    },
    /// The sender gave up; the failure says whether anyone else could do
    /// better.
    Error(Failure),
}

const DATA: u8 = 1;
const KEEPALIVE: u8 = 2;
const END: u8 = 3;
const ERROR: u8 = 4;

impl Frame {
    /// Encodes the frame in one buffer, computing a data chunk's checksum.
    pub fn encode(&self) -> Bytes {
        let (head, payload) = self.encode_parts();
        match payload {
            None => head,
            Some(p) => {
                let mut b = BytesMut::with_capacity(head.len() + p.len());
                b.put_slice(&head);
                b.put_slice(&p);
                b.freeze()
            }
        }
    }

    /// Encodes the frame as a head and, for data, the chunk itself, so a
    /// sender can write the chunk without copying it.
    pub fn encode_parts(&self) -> (Bytes, Option<Bytes>) {
        let mut b = BytesMut::new();
        match self {
            Frame::Data(d, sum) => {
                b.reserve(5 + CHUNK_SUM);
                b.put_u8(DATA);
                b.put_u32_le((CHUNK_SUM + d.len()) as u32);
                b.put_slice(&sum.unwrap_or_else(|| chunk_sum(d)));
                return (b.freeze(), Some(d.clone()));
            }
            Frame::KeepAlive => {
                b.put_u8(KEEPALIVE);
                b.put_u32_le(0);
            }
            Frame::End { len, checksum } => {
                b.put_u8(END);
                b.put_u32_le(40);
                b.put_u64_le(*len);
                b.put_slice(checksum);
            }
            Frame::Error(f) => {
                let m = &f.message.as_bytes()[..f.message.len().min(4096)];
                b.put_u8(ERROR);
                b.put_u32_le(1 + m.len() as u32);
                b.put_u8(u8::from(f.fatal));
                b.put_slice(m);
            }
        }
        (b.freeze(), None)
    }
}

/// Reassembles frames from body chunks of any size. Received chunks are
/// kept as they are; a frame's payload is copied only when it spans
/// several of them, so every byte is copied at most once.
#[derive(Default)]
pub struct Decoder {
    pieces: VecDeque<Bytes>,
    len: usize,
}

impl Decoder {
    /// Appends received bytes.
    pub fn push(&mut self, bytes: Bytes) {
        if !bytes.is_empty() {
            self.len += bytes.len();
            self.pieces.push_back(bytes);
        }
    }

    /// Copies the first `out.len()` pending bytes into `out` (the caller
    /// checks that many are pending).
    fn peek(&self, out: &mut [u8]) {
        let mut at = 0;
        for p in &self.pieces {
            let n = (out.len() - at).min(p.len());
            out[at..at + n].copy_from_slice(&p[..n]);
            at += n;
            if at == out.len() {
                return;
            }
        }
    }

    /// Removes the first `n` pending bytes (the caller checks that many
    /// are pending), without copying when one piece holds them all.
    fn take(&mut self, n: usize) -> Bytes {
        self.len -= n;
        if let Some(front) = self.pieces.front_mut()
            && front.len() >= n
        {
            let out = front.split_to(n);
            if front.is_empty() {
                self.pieces.pop_front();
            }
            return out;
        }
        let mut out = BytesMut::with_capacity(n);
        while out.len() < n {
            let Some(front) = self.pieces.front_mut() else {
                break;
            };
            let k = (n - out.len()).min(front.len());
            out.put_slice(&front.split_to(k));
            if front.is_empty() {
                self.pieces.pop_front();
            }
        }
        out.freeze()
    }

    /// The next complete frame, `None` if more bytes are needed.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, ProtoError> {
        if self.len < 5 {
            return Ok(None);
        }
        let mut head = [0u8; 5];
        self.peek(&mut head);
        let kind = head[0];
        let len = u32::from_le_bytes([head[1], head[2], head[3], head[4]]) as usize;
        if len > MAX_FRAME {
            return Err(ProtoError::BadFrame(format!("frame of {len} bytes")));
        }
        if self.len < 5 + len {
            return Ok(None);
        }
        self.take(5);
        let mut payload = self.take(len);
        let frame = match kind {
            DATA => {
                if len < CHUNK_SUM {
                    return Err(ProtoError::BadFrame("short data frame".into()));
                }
                let mut sum = [0u8; CHUNK_SUM];
                sum.copy_from_slice(&payload.split_to(CHUNK_SUM));
                if chunk_sum(&payload) != sum {
                    return Err(ProtoError::CorruptChunk);
                }
                Frame::Data(payload, Some(sum))
            }
            KEEPALIVE if len == 0 => Frame::KeepAlive,
            END if len == 40 => {
                let n = payload.get_u64_le();
                let mut checksum = [0u8; 32];
                checksum.copy_from_slice(&payload);
                Frame::End { len: n, checksum }
            }
            ERROR if len >= 1 => Frame::Error(Failure {
                fatal: payload[0] != 0,
                message: String::from_utf8_lossy(&payload[1..]).into_owned(),
            }),
            _ => {
                return Err(ProtoError::BadFrame(format!(
                    "kind {kind} with {len} bytes"
                )));
            }
        };
        Ok(Some(frame))
    }

    /// Bytes received but not yet framed.
    pub fn pending(&self) -> usize {
        self.len
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_across_any_split() {
        let frames = [
            Frame::Data(Bytes::from(vec![7u8; 1000]), None),
            Frame::KeepAlive,
            Frame::Data(Bytes::from_static(b"x"), Some(chunk_sum(b"x"))),
            Frame::End {
                len: 1001,
                checksum: [9; 32],
            },
            Frame::Error(Failure::fatal("origin said 404")),
        ];
        let wire: Vec<u8> = frames.iter().flat_map(|f| f.encode().to_vec()).collect();
        for step in [1, 3, 64, wire.len()] {
            let mut d = Decoder::default();
            let mut got = Vec::new();
            for piece in wire.chunks(step) {
                d.push(Bytes::copy_from_slice(piece));
                while let Some(f) = d.next_frame().unwrap() {
                    got.push(f);
                }
            }
            let want: Vec<Frame> = frames
                .iter()
                .map(|f| match f {
                    Frame::Data(d, _) => Frame::Data(d.clone(), Some(chunk_sum(d))),
                    f => f.clone(),
                })
                .collect();
            assert_eq!(got, want);
            assert_eq!(d.pending(), 0);
        }
    }

    #[test]
    fn a_flipped_byte_is_caught() {
        let mut wire = Frame::Data(Bytes::from(vec![1u8; 100]), None)
            .encode()
            .to_vec();
        wire[60] ^= 0x20;
        let mut d = Decoder::default();
        d.push(Bytes::from(wire));
        assert_eq!(d.next_frame(), Err(ProtoError::CorruptChunk));
        let mut d = Decoder::default();
        d.push(Bytes::from_static(&[9, 0, 0, 0, 0]));
        assert!(matches!(d.next_frame(), Err(ProtoError::BadFrame(_))));
        let mut d = Decoder::default();
        d.push(Bytes::from_static(&[1, 0xff, 0xff, 0xff, 0x7f]));
        assert!(matches!(d.next_frame(), Err(ProtoError::BadFrame(_))));
    }
}
