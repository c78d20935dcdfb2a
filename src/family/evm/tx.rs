//! A signed EVM transaction as a client sends it to `eth_sendRawTransaction`: its hash,
//! sender and nonce, known without asking a node. The hash answers "already known" and looks
//! the transaction up after "nonce too low"; the sender and nonce let the transaction watch
//! tell "replaced" (another transaction took the nonce) from "still pending", and answer a
//! wallet's `pending` nonce read with what it has just sent.
//!
//! Decoded with alloy (`TxEnvelope::decode_2718`), which reads every transaction type
//! (legacy, EIP-2930, 1559, 4844 in its network form with the blob sidecar, 7702) and
//! recovers the sender: the field's own, well-kept code rather than a hand-written RLP
//! reader. The hashes are checked against the execution-apis recordings below.

use alloy_consensus::transaction::SignerRecoverable;
use alloy_consensus::{Transaction, TxEnvelope};
use alloy_eips::eip2718::Decodable2718;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TxError {
    #[error("not a 0x-prefixed hex string")]
    NotHex,
    #[error("not a signed transaction: {0}")]
    Decode(String),
    #[error("the signature does not recover a sender: {0}")]
    Signature(String),
}

/// What Manifold knows of a signed transaction from its bytes alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedTx {
    /// `0x`-prefixed lowercase hex.
    pub hash: String,
    /// `0x`-prefixed lowercase hex, 20 bytes.
    pub sender: String,
    pub nonce: u64,
}

/// Decode a raw signed transaction given as `0x`-prefixed hex.
pub fn decode_signed(raw_hex: &str) -> Result<SignedTx, TxError> {
    let hex_digits = raw_hex
        .strip_prefix("0x")
        .or_else(|| raw_hex.strip_prefix("0X"))
        .ok_or(TxError::NotHex)?;
    let raw = hex::decode(hex_digits).map_err(|_| TxError::NotHex)?;
    let tx = TxEnvelope::decode_2718_exact(&raw).map_err(|e| TxError::Decode(e.to_string()))?;
    let sender = tx
        .recover_signer()
        .map_err(|e| TxError::Signature(e.to_string()))?;
    Ok(SignedTx {
        hash: format!("0x{}", hex::encode(tx.tx_hash())),
        sender: format!("0x{}", hex::encode(sender)),
        nonce: tx.nonce(),
    })
}

/// The hash of a raw signed transaction given as `0x`-prefixed hex, as `0x`-prefixed hex.
pub fn transaction_hash_hex(raw_hex: &str) -> Result<String, TxError> {
    decode_signed(raw_hex).map(|tx| tx.hash)
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
            let tx = decode_signed(raw).unwrap();
            assert_eq!(tx.hash, resp["result"].as_str().unwrap(), "{raw:.20}");
            assert!(
                tx.sender.len() == 42 && tx.sender.starts_with("0x"),
                "{tx:?}"
            );
            checked += 1;
        }
        assert_eq!(
            checked, 5,
            "legacy, 2930, 1559 (two) and a 4844 blob transaction"
        );
    }

    /// The execution-apis legacy transfer, nonce 0: the `txpool_content` recording lists this
    /// very signature (its `r`) under its sender.
    #[test]
    fn sender_and_nonce_are_recovered() {
        let raw = "0xf86c808401a213988261a894aa000000000000000000000000000000000000000a8255448718e5bb3abd109fa073fbe7ff7e74339e7cc61fb3cb3f7630cd3f1d5fef653d7297654b2d22894daea042a188d30f35f19408c73c803bc1e9e17ce129c457e31fd2a368b54507af2f4c";
        let tx = decode_signed(raw).unwrap();
        assert_eq!(tx.nonce, 0);
        assert_eq!(tx.sender, "0x0c2c51a0990aee1d73c1228de158688341557508");
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
            "0x03c3010203",
            "0x04c20102",
        ] {
            assert!(decode_signed(bad).is_err(), "{bad}");
        }
    }
}
