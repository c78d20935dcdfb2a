//! Reading an upstream's HTTP reply as the JSON-RPC answer to the request we sent.
//!
//! The reply's `result` or `error` is kept as a slice of the body (no copy, no re-encoding),
//! so what the client gets is byte-for-byte what the node said.

use serde::Deserialize;
use serde_json::value::RawValue;

use bytes::Bytes;

use super::client::HttpReply;
use super::outcome::Outcome;
use crate::jsonrpc::raw::{present, slice_of};
use crate::jsonrpc::Payload;

#[derive(Deserialize)]
struct RawReply<'a> {
    #[serde(borrow, default, deserialize_with = "present")]
    id: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    result: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    error: Option<&'a RawValue>,
}

/// Classify an HTTP reply to a request sent with id `expected_id` (JSON text).
///
/// Statuses: 2xx carries the answer. 429 is a rate limit. A 4xx that the request itself
/// caused (400, 413, ...) is the node's answer when it carries a JSON-RPC error for our id,
/// else a rejection that is not held against the upstream; so is any of `answer_statuses`
/// (the family's: Bitcoin Core answers an RPC error with 500, an unknown method with 404).
/// Other statuses (401/403/404: the upstream is misconfigured or refuses us; 5xx: it is
/// failing) are the upstream's fault.
pub fn read_reply(
    expected_id: &[u8],
    reply: &HttpReply,
    answer_statuses: &[u16],
) -> Result<Payload, (Outcome, String)> {
    let status = reply.status;
    if status == http::StatusCode::TOO_MANY_REQUESTS {
        return Err((Outcome::RateLimited, format!("HTTP {status}")));
    }
    if status.is_success() {
        return parse(expected_id, &reply.body);
    }
    let rpc_error = match parse(expected_id, &reply.body) {
        Ok(Payload::Error(e)) => Some(e),
        _ => None,
    };
    let caused_by_request = matches!(status.as_u16(), 400 | 411 | 413 | 414 | 415 | 422 | 431);
    let answers = caused_by_request || answer_statuses.contains(&status.as_u16());
    match (caused_by_request, rpc_error) {
        (_, Some(e)) if answers => Ok(Payload::Error(e)),
        (true, None) => Err((Outcome::Rejected, format!("HTTP {status}"))),
        (_, Some(e)) => Err((
            Outcome::HttpStatus,
            format!(
                "HTTP {status}: {}",
                String::from_utf8_lossy(&e)
                    .chars()
                    .take(200)
                    .collect::<String>()
            ),
        )),
        (false, None) => Err((Outcome::HttpStatus, format!("HTTP {status}"))),
    }
}

fn parse(expected_id: &[u8], body: &Bytes) -> Result<Payload, (Outcome, String)> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err((Outcome::BadReply, "empty body".into()));
    }
    let parsed: RawReply<'_> = match serde_json::from_slice(body) {
        Ok(r) => r,
        Err(e) if e.is_eof() => return Err((Outcome::BadReply, format!("truncated JSON: {e}"))),
        Err(e) => return Err((Outcome::BadReply, format!("not a JSON-RPC response: {e}"))),
    };
    match parsed.id {
        Some(id) if id.get().as_bytes() == expected_id => {}
        // A node that could not read our request well enough to see its id answers with a
        // null id (JSON-RPC 2.0 §5: parse error, invalid request). We send one call at a time,
        // so it is the answer to this one: what the client sent (a lone surrogate in
        // `params`) is at fault, not the node.
        Some(id)
            if id.get() == "null" && parsed.error.is_some_and(|e| e.get().starts_with('{')) => {}
        Some(id) => {
            return Err((
                Outcome::BadReply,
                format!(
                    "reply id {} does not match request id {}",
                    short(id.get()),
                    String::from_utf8_lossy(expected_id)
                ),
            ))
        }
        None => return Err((Outcome::BadReply, "reply has no id".into())),
    }
    match (parsed.error, parsed.result) {
        (Some(e), _) if e.get().starts_with('{') => Ok(Payload::Error(slice_of(body, e.get()))),
        (Some(e), _) if e.get() != "null" => {
            Err((Outcome::BadReply, "reply error is not an object".into()))
        }
        (_, Some(r)) => Ok(Payload::Result(slice_of(body, r.get()))),
        _ => Err((
            Outcome::BadReply,
            "reply has neither result nor error".into(),
        )),
    }
}

fn short(s: &str) -> &str {
    match s.char_indices().nth(40) {
        Some((i, _)) => s.get(..i).unwrap_or(s),
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::StatusCode;

    fn reply(status: u16, body: &'static str) -> HttpReply {
        HttpReply {
            status: StatusCode::from_u16(status).unwrap(),
            version: http::Version::HTTP_11,
            retry_after: None,
            body: Bytes::from_static(body.as_bytes()),
        }
    }

    #[test]
    fn an_error_with_a_null_id_is_the_answer_to_our_call() {
        let body =
            r#"{"jsonrpc":"2.0","id":null,"error":{"code":-32600,"message":"invalid request"}}"#;
        assert_eq!(
            read_reply(b"7", &reply(200, body), &[]),
            Ok(Payload::Error(Bytes::from_static(
                br#"{"code":-32600,"message":"invalid request"}"#
            )))
        );
        // A result with a null id answers nobody's call.
        assert_eq!(
            outcome(200, r#"{"jsonrpc":"2.0","id":null,"result":"0x1"}"#),
            Outcome::BadReply
        );
    }

    fn outcome(status: u16, body: &'static str) -> Outcome {
        read_reply(b"7", &reply(status, body), &[]).unwrap_err().0
    }

    #[test]
    fn result_and_error_are_passed_as_raw_slices() {
        let r = reply(200, r#"{"jsonrpc":"2.0","id":7,"result":{"a": [1, 2.50]}}"#);
        assert_eq!(
            read_reply(b"7", &r, &[]).unwrap(),
            Payload::Result(Bytes::from_static(br#"{"a": [1, 2.50]}"#))
        );
        let r = reply(
            200,
            r#"{"jsonrpc":"2.0","id":7,"error":{"code":3,"message":"execution reverted","data":"0x08c3"}}"#,
        );
        assert_eq!(
            read_reply(b"7", &r, &[]).unwrap(),
            Payload::Error(Bytes::from_static(
                br#"{"code":3,"message":"execution reverted","data":"0x08c3"}"#
            ))
        );
        let r = reply(200, r#"{"id":7,"result":null,"error":null}"#);
        assert_eq!(
            read_reply(b"7", &r, &[]).unwrap(),
            Payload::Result(Bytes::from_static(b"null"))
        );
    }

    #[test]
    fn broken_replies_are_classified() {
        assert_eq!(outcome(429, ""), Outcome::RateLimited);
        assert_eq!(
            outcome(503, r#"{"jsonrpc":"2.0","id":7,"result":1}"#),
            Outcome::HttpStatus
        );
        assert_eq!(outcome(200, ""), Outcome::BadReply);
        assert_eq!(outcome(200, "<html>bad gateway</html>"), Outcome::BadReply);
        assert_eq!(
            outcome(200, r#"{"jsonrpc":"2.0","id":7,"result":"0x"#),
            Outcome::BadReply
        );
        assert_eq!(
            outcome(200, r#"{"jsonrpc":"2.0","id":8,"result":1}"#),
            Outcome::BadReply
        );
        assert_eq!(
            outcome(200, r#"{"jsonrpc":"2.0","result":1}"#),
            Outcome::BadReply
        );
        assert_eq!(
            outcome(200, r#"{"jsonrpc":"2.0","id":7}"#),
            Outcome::BadReply
        );
        assert_eq!(
            outcome(200, r#"[{"jsonrpc":"2.0","id":7,"result":1}]"#),
            Outcome::BadReply
        );
        assert_eq!(
            outcome(200, r#"{"jsonrpc":"2.0","id":7,"error":"boom"}"#),
            Outcome::BadReply
        );
    }

    #[test]
    fn client_caused_4xx_passes_the_nodes_answer_or_is_a_rejection() {
        let answer =
            r#"{"jsonrpc":"2.0","id":7,"error":{"code":-32602,"message":"invalid params"}}"#;
        assert_eq!(
            read_reply(b"7", &reply(400, answer), &[]).unwrap(),
            Payload::Error(Bytes::from_static(
                br#"{"code":-32602,"message":"invalid params"}"#
            ))
        );
        assert_eq!(outcome(413, "too large"), Outcome::Rejected);
        assert_eq!(
            outcome(
                400,
                r#"{"jsonrpc":"2.0","id":8,"error":{"code":1,"message":"x"}}"#
            ),
            Outcome::Rejected
        );
    }

    #[test]
    fn upstream_caused_statuses_are_faults_even_with_a_json_rpc_body() {
        let body = r#"{"jsonrpc":"2.0","id":7,"error":{"code":-32002,"message":"project ID not allowed"}}"#;
        for status in [401, 403, 404, 405, 408, 500, 502, 503] {
            assert_eq!(outcome(status, body), Outcome::HttpStatus, "{status}");
        }
        let (_, why) = read_reply(b"7", &reply(403, body), &[]).unwrap_err();
        assert!(
            why.contains("HTTP 403") && why.contains("project ID not allowed"),
            "{why}"
        );
    }

    #[test]
    fn truncation_is_named() {
        let (_, why) = read_reply(
            b"7",
            &reply(200, r#"{"jsonrpc":"2.0","id":7,"result":"0x12"#),
            &[],
        )
        .unwrap_err();
        assert!(why.contains("truncated"), "{why}");
    }

    #[test]
    fn a_familys_answer_statuses_carry_the_nodes_answer() {
        // Bitcoin Core, legacy replies: an RPC error in HTTP 500, an unknown method in 404.
        let mempool = r#"{"result":null,"error":{"code":-27,"message":"Transaction already in the mempool"},"id":7}"#;
        let unknown =
            r#"{"result":null,"error":{"code":-32601,"message":"Method not found"},"id":7}"#;
        for (status, body) in [(500, mempool), (404, unknown)] {
            assert!(matches!(
                read_reply(b"7", &reply(status, body), &[500, 404]),
                Ok(Payload::Error(_))
            ));
            // For a family that answers errors with 200, the same is a failing upstream.
            assert_eq!(
                read_reply(b"7", &reply(status, body), &[]).unwrap_err().0,
                Outcome::HttpStatus
            );
        }
        // Without a JSON-RPC error for our id, a 500 is a failure whatever the family.
        assert_eq!(
            read_reply(b"7", &reply(500, "Work queue depth exceeded"), &[500, 404])
                .unwrap_err()
                .0,
            Outcome::HttpStatus
        );
    }
}
