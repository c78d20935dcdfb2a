//! A call's identity for the cache and for coalescing: a SHA-256 digest over the chain, the
//! method and the params (canonical ones for the cache), compared whole. A 64-bit hash
//! compared alone (as web3-proxy's) would, at a collision, hand one call another's answer.

use std::hash::{BuildHasherDefault, Hash, Hasher};

use sha2::{Digest, Sha256};

#[derive(Clone, Copy, PartialEq, Eq)]
pub struct CallKey([u8; 32]);

impl CallKey {
    pub fn new(chain: &str, method: &str, params: &[u8]) -> Self {
        let mut h = Sha256::new();
        // Lengths first: no two (chain, method, params) triples hash the same bytes.
        for part in [chain.as_bytes(), method.as_bytes(), params] {
            h.update((part.len() as u64).to_le_bytes());
            h.update(part);
        }
        Self(h.finalize().into())
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl std::fmt::Debug for CallKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CallKey({})", hex::encode(&self.0[..8]))
    }
}

impl Hash for CallKey {
    /// A digest's bytes are uniform already: its first word is the map's hash, without
    /// SipHash over all 32 bytes on every call. Equality still compares all of them.
    fn hash<H: Hasher>(&self, state: &mut H) {
        let mut word = [0u8; 8];
        word.copy_from_slice(&self.0[..8]);
        state.write_u64(u64::from_le_bytes(word));
    }
}

/// The hasher of maps keyed by `CallKey`: takes the word `CallKey::hash` writes.
#[derive(Debug, Default, Clone, Copy)]
pub struct FirstWord(u64);

impl Hasher for FirstWord {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is used by `CallKey`; any other input is folded in.
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }

    fn write_u64(&mut self, v: u64) {
        self.0 ^= v;
    }
}

pub type KeyHasher = BuildHasherDefault<FirstWord>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_part_counts_and_boundaries_cannot_shift() {
        let k = CallKey::new("eth", "eth_call", b"[1]");
        assert_eq!(k, CallKey::new("eth", "eth_call", b"[1]"));
        assert_ne!(k, CallKey::new("eth2", "eth_call", b"[1]"));
        assert_ne!(k, CallKey::new("eth", "eth_cal", b"[1]"));
        assert_ne!(k, CallKey::new("eth", "eth_call", b"[2]"));
        assert_ne!(
            CallKey::new("ab", "c", b""),
            CallKey::new("a", "bc", b""),
            "length-prefixed"
        );
        assert!(format!("{k:?}").starts_with("CallKey("));
    }
}
