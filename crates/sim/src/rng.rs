//! Small draws from the caller's RNG, each a fixed number of `u64`s so
//! that paired runs stay aligned.

use rand::Rng;

/// A uniform float in `[0, 1)` from one `u64`.
pub fn unit<R: Rng + ?Sized>(rng: &mut R) -> f64 {
    (rng.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

/// A uniform index below `n` (`n > 0`) from one `u64`.
pub fn below<R: Rng + ?Sized>(rng: &mut R, n: usize) -> usize {
    ((u128::from(rng.next_u64()) * n as u128) >> 64) as usize
}

/// A seed for stream `stream` of run `seed`: demand, path coins and
/// placement draws come from separate streams, so changing how many
/// draws one of them makes cannot shift the others.
pub fn stream(seed: u64, stream: u64) -> u64 {
    let mut z = seed ^ stream.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}
