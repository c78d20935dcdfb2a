//! The hash of a signed EVM transaction, computed from the raw bytes a client sends to
//! `eth_sendRawTransaction`, so that the proxy knows the hash without asking a node (to
//! answer "already known", or to look the transaction up after "nonce too low").
//!
//! The hash is keccak-256 of the signed envelope: the RLP list for a legacy transaction, and
//! `type || payload` for typed ones (EIP-2718: 2930, 1559, 4844, 7702). A blob transaction
//! (EIP-4844) is sent in its network form, `0x03 || rlp([tx, blobs, commitments, proofs])`,
//! but hashed without the sidecar: `keccak(0x03 || rlp(tx))`. Only RLP headers are read, so
//! a 275 KB blob transaction is never copied.

use sha3::{Digest, Keccak256};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TxError {
    #[error("not a 0x-prefixed hex string")]
    NotHex,
    #[error("empty transaction")]
    Empty,
    #[error("malformed RLP: {0}")]
    Rlp(&'static str),
    #[error("unknown transaction type 0x{0:02x}")]
    UnknownType(u8),
}

/// The hash of a raw signed transaction given as `0x`-prefixed hex, as `0x`-prefixed hex.
pub fn transaction_hash_hex(raw_hex: &str) -> Result<String, TxError> {
    let hex_digits = raw_hex
        .strip_prefix("0x")
        .or_else(|| raw_hex.strip_prefix("0X"))
        .ok_or(TxError::NotHex)?;
    let raw = hex::decode(hex_digits).map_err(|_| TxError::NotHex)?;
    Ok(format!("0x{}", hex::encode(transaction_hash(&raw)?)))
}

/// keccak-256 of the signed envelope.
pub fn transaction_hash(raw: &[u8]) -> Result<[u8; 32], TxError> {
    let (&first, payload) = raw.split_first().ok_or(TxError::Empty)?;
    match first {
        // Legacy: the whole thing is one RLP list.
        0xc0..=0xff => {
            let item = rlp_item(raw)?;
            if item.total != raw.len() || !item.is_list {
                return Err(TxError::Rlp("trailing bytes after the transaction"));
            }
            Ok(keccak(&[raw]))
        }
        0x01 | 0x02 | 0x04 => {
            whole_list(payload)?;
            Ok(keccak(&[raw]))
        }
        0x03 => {
            let outer = whole_list(payload)?;
            // Network form: the first element of the outer list is itself the transaction list.
            let body = payload
                .get(outer.header..)
                .ok_or(TxError::Rlp("truncated"))?;
            let first_item = rlp_item(body)?;
            if first_item.is_list {
                let tx = body
                    .get(..first_item.total)
                    .ok_or(TxError::Rlp("truncated"))?;
                Ok(keccak(&[&[0x03], tx]))
            } else {
                Ok(keccak(&[raw]))
            }
        }
        other => Err(TxError::UnknownType(other)),
    }
}

fn keccak(parts: &[&[u8]]) -> [u8; 32] {
    let mut h = Keccak256::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

/// An RLP item's header: its header length, total length, and whether it is a list.
#[derive(Debug, Clone, Copy)]
struct Item {
    header: usize,
    total: usize,
    is_list: bool,
}

/// `bytes` must be exactly one RLP list.
fn whole_list(bytes: &[u8]) -> Result<Item, TxError> {
    let item = rlp_item(bytes)?;
    if !item.is_list {
        return Err(TxError::Rlp("the payload is not a list"));
    }
    if item.total != bytes.len() {
        return Err(TxError::Rlp("trailing bytes after the transaction"));
    }
    Ok(item)
}

/// The header of the RLP item at the start of `bytes` (and that it fits in `bytes`).
fn rlp_item(bytes: &[u8]) -> Result<Item, TxError> {
    let (&b, rest) = bytes.split_first().ok_or(TxError::Rlp("truncated"))?;
    let (header, len, is_list) = match b {
        0x00..=0x7f => (0, 1, false),
        0x80..=0xb7 => (1, usize::from(b - 0x80), false),
        0xb8..=0xbf => long(rest, usize::from(b - 0xb7), false)?,
        0xc0..=0xf7 => (1, usize::from(b - 0xc0), true),
        0xf8..=0xff => long(rest, usize::from(b - 0xf7), true)?,
    };
    // A single byte below 0x80 is its own item.
    let total = if header == 0 {
        1
    } else {
        header.checked_add(len).ok_or(TxError::Rlp("too long"))?
    };
    if total > bytes.len() {
        return Err(TxError::Rlp("truncated"));
    }
    Ok(Item {
        header,
        total,
        is_list,
    })
}

/// A long-form header: `len_of_len` big-endian length bytes follow the first byte.
fn long(rest: &[u8], len_of_len: usize, is_list: bool) -> Result<(usize, usize, bool), TxError> {
    let len_bytes = rest.get(..len_of_len).ok_or(TxError::Rlp("truncated"))?;
    if len_of_len > std::mem::size_of::<usize>() || len_bytes.first() == Some(&0) {
        return Err(TxError::Rlp("bad length"));
    }
    let len = len_bytes
        .iter()
        .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
    Ok((1 + len_of_len, len, is_list))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every `eth_sendRawTransaction` case of the execution-apis conformance data: the
    /// recorded answer is the hash geth computed.
    #[test]
    fn hashes_match_the_conformance_recordings() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/execution-apis/eth_sendRawTransaction");
        let mut checked = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
            let req = text.lines().find_map(|l| l.strip_prefix(">> ")).unwrap();
            let resp = text.lines().find_map(|l| l.strip_prefix("<< ")).unwrap();
            let req: serde_json::Value = serde_json::from_str(req).unwrap();
            let resp: serde_json::Value = serde_json::from_str(resp).unwrap();
            let raw = req["params"][0].as_str().unwrap();
            assert_eq!(
                transaction_hash_hex(raw).unwrap(),
                resp["result"].as_str().unwrap(),
                "{raw:.20}"
            );
            checked += 1;
        }
        assert_eq!(
            checked, 5,
            "legacy, 2930, 1559 (two) and a 4844 blob transaction"
        );
    }

    #[test]
    fn a_blob_transaction_without_sidecar_hashes_whole() {
        // The canonical form (no sidecar): first element of the list is the chain id.
        let raw = [0x03, 0xc3, 0x01, 0x02, 0x03];
        assert_eq!(transaction_hash(&raw).unwrap(), keccak(&[&raw]));
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for bad in [
            "",
            "0x",
            "1234",
            "0xzz",
            "0x05c0",
            "0x02",
            "0x02c5",
            "0x02c0ff",
            "0xf8",
            "0xff0000000000000000ff",
            "0xbf0100000000000000",
            "0x03f8",
        ] {
            assert!(transaction_hash_hex(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn eip_7702_hashes_the_envelope() {
        let raw = [0x04, 0xc2, 0x01, 0x02];
        assert_eq!(transaction_hash(&raw).unwrap(), keccak(&[&raw]));
    }
}
