//! Lays out each tiktoken encoding's rank table at build time, so that a
//! run's tokenizer is ready without decoding, hashing and sorting 200,000
//! ranks at start-up (about half of a tiny run's time before).
//!
//! The ranks come from tiktoken-rs (a build dependency only): each
//! ordinary token's bytes by its rank. The file `OUT_DIR/<encoding>.ranks`
//! holds, as little-endian u32s, the token count `n`, the table's `bits`,
//! `n + 1` offsets into the bytes, `1 << bits` slots (0 empty, else rank
//! plus 1; linear probing from `hash::slot`), then every token's bytes in
//! rank order.

#[path = "src/tokens/hash.rs"]
mod hash;

use std::io::Write;

/// Each encoding with the end of its ordinary ranks (`0..n`) and the
/// special tokens' ranks among them (p50k_base's `<|endoftext|>` sits at
/// 50256, between ordinary tokens): special tokens are never produced from
/// ordinary text, so the table leaves them out.
const ENCODINGS: &[(&str, u32, &[u32])] = &[
    ("o200k_base", 199_998, &[]),
    ("cl100k_base", 100_256, &[]),
    ("p50k_base", 50_281, &[50_256]),
    ("r50k_base", 50_256, &[]),
];

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-changed=src/tokens/hash.rs");
    let out = std::path::PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR"));
    for &(name, n, special) in ENCODINGS {
        let bpe = match name {
            "o200k_base" => tiktoken_rs::o200k_base(),
            "cl100k_base" => tiktoken_rs::cl100k_base(),
            "p50k_base" => tiktoken_rs::p50k_base(),
            _ => tiktoken_rs::r50k_base(),
        }
        .expect("tiktoken-rs's own encoding loads");
        let tokens: Vec<Vec<u8>> = (0..n)
            .map(|rank| match special.contains(&rank) {
                true => Vec::new(),
                false => bpe
                    .decode_bytes(&[rank])
                    .unwrap_or_else(|_| panic!("{name}: rank {rank} has no bytes")),
            })
            .collect();
        // Two slots or more a token: short probes.
        let bits = (2 * n).next_power_of_two().trailing_zeros();
        let mut slots = vec![0u32; 1 << bits];
        let mask = slots.len() - 1;
        for (rank, bytes) in tokens.iter().enumerate() {
            if bytes.is_empty() {
                continue;
            }
            let mut at = hash::slot(bytes, bits);
            while slots[at] != 0 {
                assert_ne!(
                    &tokens[slots[at] as usize - 1],
                    bytes,
                    "{name}: duplicate token"
                );
                at = (at + 1) & mask;
            }
            slots[at] = rank as u32 + 1;
        }
        let mut file = Vec::new();
        let mut put = |v: u32| file.extend_from_slice(&v.to_le_bytes());
        put(n);
        put(bits);
        let mut offset = 0u32;
        put(offset);
        for bytes in &tokens {
            offset += bytes.len() as u32;
            put(offset);
        }
        for &slot in &slots {
            put(slot);
        }
        for bytes in &tokens {
            file.extend_from_slice(bytes);
        }
        let path = out.join(format!("{name}.ranks"));
        std::fs::File::create(&path)
            .and_then(|mut f| f.write_all(&file))
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }
}
