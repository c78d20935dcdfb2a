//! A raw Bitcoin transaction's id, computed locally from the hex a client sends to
//! `sendrawtransaction`: the double SHA-256 of its serialization without witness data,
//! shown byte-reversed (BIP144). A segwit transaction (`version | 0x00 | flag | ins | outs |
//! witnesses | locktime`) is hashed as `version | ins | outs | locktime`.
//!
//! Written by hand rather than with the `bitcoin` crate: the id needs only the layout's
//! lengths (varints, scripts, witness stacks) and one hash, where that crate would bring
//! libsecp256k1's C build for nothing else.

use sha2::{Digest, Sha256};

/// The txid (lower-case hex, as nodes show it) of the raw transaction `hex`.
pub fn txid(hex: &str) -> Result<String, String> {
    let raw = hex::decode(hex.trim()).map_err(|e| format!("not hex: {e}"))?;
    let stripped = without_witness(&raw)?;
    let mut id: [u8; 32] = Sha256::digest(Sha256::digest(&stripped)).into();
    id.reverse();
    Ok(hex::encode(id))
}

/// The serialization without witness data (the input itself when it has none).
fn without_witness(raw: &[u8]) -> Result<Vec<u8>, String> {
    let mut r = Reader { raw, at: 0 };
    let version = r.take(4)?;
    // BIP144: a zero input count followed by a non-zero flag marks the witness form.
    let segwit = raw.get(4) == Some(&0) && raw.get(5).is_some_and(|f| *f != 0);
    if segwit {
        r.take(2)?;
    }
    let body_start = r.at;
    let inputs = r.varint()?;
    if inputs == 0 {
        return Err("a transaction without inputs".into());
    }
    for _ in 0..inputs {
        r.take(36)?; // the spent output: txid and index
        let script = r.varint()?;
        r.take(script)?;
        r.take(4)?; // sequence
    }
    let outputs = r.varint()?;
    for _ in 0..outputs {
        r.take(8)?; // value
        let script = r.varint()?;
        r.take(script)?;
    }
    let body_end = r.at;
    if segwit {
        for _ in 0..inputs {
            let items = r.varint()?;
            for _ in 0..items {
                let len = r.varint()?;
                r.take(len)?;
            }
        }
    }
    let locktime = r.take(4)?;
    if r.at != raw.len() {
        return Err(format!("{} bytes after the transaction", raw.len() - r.at));
    }
    let body = raw
        .get(body_start..body_end)
        .ok_or("a transaction shorter than its own lengths")?;
    Ok([version, body, locktime].concat())
}

struct Reader<'a> {
    raw: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self.at.checked_add(n).filter(|e| *e <= self.raw.len());
        let Some(end) = end else {
            return Err(format!("truncated at byte {}", self.at));
        };
        let out = self.raw.get(self.at..end).ok_or("truncated")?;
        self.at = end;
        Ok(out)
    }

    /// A CompactSize length, at most the bytes left (so that no length allocates).
    fn varint(&mut self) -> Result<usize, String> {
        let first = *self.take(1)?.first().ok_or("truncated")?;
        let n = match first {
            0xfd => u64::from(u16::from_le_bytes(self.array()?)),
            0xfe => u64::from(u32::from_le_bytes(self.array()?)),
            0xff => u64::from_le_bytes(self.array()?),
            n => u64::from(n),
        };
        usize::try_from(n)
            .ok()
            .filter(|n| *n <= self.raw.len())
            .ok_or_else(|| {
                format!(
                    "a length of {n} in a transaction of {} bytes",
                    self.raw.len()
                )
            })
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], String> {
        self.take(N)?
            .try_into()
            .map_err(|_| "truncated".to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The genesis block's coinbase: txid 4a5e1e4b…a33b.
    const GENESIS_COINBASE: &str = "01000000010000000000000000000000000000000000000000000000000000000000000000ffffffff4d04ffff001d0104455468652054696d65732030332f4a616e2f32303039204368616e63656c6c6f72206f6e206272696e6b206f66207365636f6e64206261696c6f757420666f722062616e6b73ffffffff0100f2052a01000000434104678afdb0fe5548271967f1a67130b7105cd6a828e03909a67962e0ea1f61deb649f6bc3f4cef38c4f35504e51ec112de5c384df7ba0b8d578a4c702b6bf11d5fac00000000";

    #[test]
    fn the_genesis_coinbase() {
        assert_eq!(
            txid(GENESIS_COINBASE).unwrap(),
            "4a5e1e4baab89f3a32518a88c31bc87f618f76673e2cc77ab2127b7afdeda33b"
        );
    }

    /// BIP143's native P2WPKH example, signed: its txid hashes the form without witness.
    #[test]
    fn a_segwit_transaction_is_hashed_without_its_witness() {
        let signed = "01000000000102fff7f7881a8099afa6940d42d1e7f6362bec38171ea3edf433541db4e4ad969f00000000494830450221008b9d1dc26ba6a9cb62127b02742fa9d754cd3bebf337f7a55d114c8e5cdd30be022040529b194ba3f9281a99f2b1c0a19c0489bc22ede944ccf4ecbab4cc618ef3ed01eeffffffef51e1b804cc89d182d279655c3aa89e815b1b309fe287d9b2b55d57b90ec68a0100000000ffffffff02202cb206000000001976a9148280b37df378db99f66f85c95a783a76ac7a6d5988ac9093510d000000001976a9143bde42dbee7e4dbe6a21b2d50ce2f0167faa815988ac000247304402203609e17b84f6a7d30c80bfa610b5b4542f32a8a0d5447a12fb1366d7f01cc44a0220573a954c4518331561406f90300e8f3358f51928d43c212a8caed02de67eebee0121025476c2e83188368da1ff3e292e7acafcdb3566bb0ad253f62fc70f07aeee635711000000";
        let unsigned = "0100000002fff7f7881a8099afa6940d42d1e7f6362bec38171ea3edf433541db4e4ad969f00000000494830450221008b9d1dc26ba6a9cb62127b02742fa9d754cd3bebf337f7a55d114c8e5cdd30be022040529b194ba3f9281a99f2b1c0a19c0489bc22ede944ccf4ecbab4cc618ef3ed01eeffffffef51e1b804cc89d182d279655c3aa89e815b1b309fe287d9b2b55d57b90ec68a0100000000ffffffff02202cb206000000001976a9148280b37df378db99f66f85c95a783a76ac7a6d5988ac9093510d000000001976a9143bde42dbee7e4dbe6a21b2d50ce2f0167faa815988ac11000000";
        assert_eq!(txid(signed).unwrap(), txid(unsigned).unwrap());
        assert_ne!(
            txid(signed).unwrap(),
            hex::encode({
                let mut h: [u8; 32] =
                    Sha256::digest(Sha256::digest(hex::decode(signed).unwrap())).into();
                h.reverse();
                h
            }),
            "the wtxid is not the txid"
        );
    }

    #[test]
    fn garbage_is_refused_with_a_reason() {
        assert!(txid("zz").unwrap_err().contains("not hex"));
        assert!(txid("0100").unwrap_err().contains("truncated"));
        assert!(txid(&format!("{GENESIS_COINBASE}00"))
            .unwrap_err()
            .contains("after the transaction"));
        // A length larger than the transaction: refused, not allocated.
        assert!(txid("01000000ff").is_err());
    }
}
