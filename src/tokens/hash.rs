//! The hash of a token's bytes, shared by the build script that lays out
//! the rank tables and the tokenizer that reads them: both must agree bit
//! for bit, so this file is compiled into both.

const K: u64 = 0x9E37_79B9_7F4A_7C15;

/// The slot of `bytes` in a table of `1 << bits` slots.
#[inline]
pub fn slot(bytes: &[u8], bits: u32) -> usize {
    let mut h = bytes.len() as u64;
    let mut words = bytes.chunks_exact(8);
    for word in &mut words {
        let word = u64::from_le_bytes([
            word[0], word[1], word[2], word[3], word[4], word[5], word[6], word[7],
        ]);
        h = (h.rotate_left(5) ^ word).wrapping_mul(K);
    }
    let rest = words.remainder();
    if !rest.is_empty() {
        let mut word = [0u8; 8];
        word[..rest.len()].copy_from_slice(rest);
        h = (h.rotate_left(5) ^ u64::from_le_bytes(word)).wrapping_mul(K);
    }
    (h.wrapping_mul(K) >> (64 - bits)) as usize
}
