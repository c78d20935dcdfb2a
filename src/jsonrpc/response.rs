//! Encoding response objects as a list of byte chunks.
//!
//! A response is assembled from the client's id bytes and the upstream's `result` or `error`
//! bytes without copying either: a 21 MB `eth_getLogs` result is a slice of the upstream's
//! body, written out as it is (see `crate::body`).

use bytes::Bytes;

use super::request::Id;

/// What answers a call: the raw JSON text of a `result`, or of an `error` object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payload {
    Result(Bytes),
    Error(Bytes),
}

const HEAD: &[u8] = br#"{"jsonrpc":"2.0","id":"#;
const RESULT: &[u8] = br#","result":"#;
const ERROR: &[u8] = br#","error":"#;
const TAIL: &[u8] = b"}";

/// One response object, as chunks.
pub fn encode_response(id: &Id, payload: &Payload) -> Vec<Bytes> {
    let (key, value) = match payload {
        Payload::Result(v) => (RESULT, v),
        Payload::Error(v) => (ERROR, v),
    };
    vec![
        Bytes::from_static(HEAD),
        id.as_bytes().clone(),
        Bytes::from_static(key),
        value.clone(),
        Bytes::from_static(TAIL),
    ]
}

/// A batch response: the given response objects in order, as one JSON array.
pub fn encode_batch(responses: Vec<Vec<Bytes>>) -> Vec<Bytes> {
    let mut out: Vec<Bytes> = responses
        .into_iter()
        .enumerate()
        .flat_map(|(i, r)| batch_element(i == 0, r))
        .collect();
    out.push(batch_end());
    out
}

/// One response object of a batch array, preceded by `[` (the first) or `,` (the others):
/// a batch can be written element by element as its answers complete, then `batch_end`.
pub fn batch_element(first: bool, response: Vec<Bytes>) -> Vec<Bytes> {
    let mut out = Vec::with_capacity(response.len() + 1);
    out.push(Bytes::from_static(if first { b"[" } else { b"," }));
    out.extend(response);
    out
}

/// The end of a batch array.
pub fn batch_end() -> Bytes {
    Bytes::from_static(b"]")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jsonrpc::{decode, Incoming, Item, Limits};

    fn concat(chunks: &[Bytes]) -> String {
        String::from_utf8(chunks.iter().flat_map(|c| c.to_vec()).collect()).unwrap()
    }

    fn id(s: &'static str) -> Id {
        let body = Bytes::from(format!(r#"{{"jsonrpc":"2.0","method":"m","id":{s}}}"#));
        match decode(
            &body,
            Limits {
                max_batch_len: 1,
                version_1: false,
            },
        ) {
            Ok(Incoming::Single(Item::Call(c))) => c.id.unwrap(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn result_response() {
        let r = encode_response(
            &id("18446744073709551617"),
            &Payload::Result(Bytes::from_static(b"\"0x1\"")),
        );
        assert_eq!(
            concat(&r),
            r#"{"jsonrpc":"2.0","id":18446744073709551617,"result":"0x1"}"#
        );
    }

    #[test]
    fn error_response_with_string_id() {
        let r = encode_response(
            &id(r#""a\"b""#),
            &Payload::Error(Bytes::from_static(br#"{"code":3,"message":"x"}"#)),
        );
        assert_eq!(
            concat(&r),
            r#"{"jsonrpc":"2.0","id":"a\"b","error":{"code":3,"message":"x"}}"#
        );
        let v: serde_json::Value = serde_json::from_str(&concat(&r)).unwrap();
        assert_eq!(v["id"], "a\"b");
    }

    #[test]
    fn batch_keeps_order() {
        let a = encode_response(&id("1"), &Payload::Result(Bytes::from_static(b"1")));
        let b = encode_response(&Id::NULL, &Payload::Result(Bytes::from_static(b"2")));
        assert_eq!(
            concat(&encode_batch(vec![a, b])),
            r#"[{"jsonrpc":"2.0","id":1,"result":1},{"jsonrpc":"2.0","id":null,"result":2}]"#
        );
    }
}
