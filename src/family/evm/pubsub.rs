//! What `eth_subscribe` notifications carry, made from the answers Manifold already has.

use bytes::Bytes;
use serde_json::{Map, Value};

/// Fields of `eth_getBlockByNumber(n, false)` that are the block's body or totals, not its
/// header: geth's `newHeads` sends the header alone (`RPCMarshalHeader`).
const NOT_HEADER: &[&str] = &[
    "transactions",
    "uncles",
    "withdrawals",
    "size",
    "totalDifficulty",
];

/// The header of a block answer, as a `newHeads` notification's `result`.
pub fn header(block: &[u8]) -> Option<Bytes> {
    let mut fields: Map<String, Value> = serde_json::from_slice(block).ok()?;
    fields.get("hash")?.as_str()?;
    for f in NOT_HEADER {
        fields.remove(*f);
    }
    serde_json::to_vec(&fields).ok().map(Bytes::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_header_is_the_block_without_its_body() {
        let block = br#"{"number":"0x2","hash":"0xab","parentHash":"0xaa","transactions":["0x1"],"uncles":[],"size":"0x200","withdrawals":[],"baseFeePerGas":"0x7"}"#;
        let h: Value = serde_json::from_slice(&header(block).unwrap()).unwrap();
        assert_eq!(
            h,
            serde_json::json!({"number":"0x2","hash":"0xab","parentHash":"0xaa","baseFeePerGas":"0x7"})
        );
        assert!(header(b"null").is_none());
        assert!(
            header(br#"{"number":"0x1"}"#).is_none(),
            "a pending block has no hash"
        );
    }
}
