//! Entry points for the fuzz targets (`fuzz/`) and for the replay of their corpus as a
//! normal test (`tests/fuzz_corpus.rs`): each runs one input through what reads untrusted
//! bytes, and panics when something that must hold does not. Nothing else calls them.
//!
//! - `client_request`: a client's body through the JSON-RPC decoder; every call decoded
//!   must re-encode as valid JSON for an upstream (same method, same params), and every
//!   answer to it, and every decode error, as a valid JSON-RPC response.
//! - `upstream_reply`: an upstream's HTTP answer (status and encoding picked by the first
//!   byte) through the body reader (limit, gzip) and the reply reader; whatever is taken as
//!   the result or error must be valid JSON, and never larger than the limit.

// Panicking on a broken invariant is what a fuzz target does.
#![allow(clippy::panic)]

use bytes::Bytes;
use serde_json::value::RawValue;

use crate::jsonrpc::{self, Incoming, Item, Limits, Payload};
use crate::upstream::{read_answer, read_reply, AnswerLimit, Encoding, HttpReply};

/// The limit answers are read within here: small, so that bombs meet it.
pub const REPLY_LIMIT: usize = 64 * 1024;

#[derive(serde::Deserialize)]
struct Sent<'a> {
    method: String,
    #[serde(borrow)]
    params: Option<&'a RawValue>,
}

fn valid_json(bytes: &[u8], what: &str) {
    if let Err(e) = serde_json::from_slice::<&RawValue>(bytes) {
        panic!(
            "{what} is not valid JSON ({e}): {:?}",
            String::from_utf8_lossy(bytes)
        );
    }
}

/// One client body through `jsonrpc::decode`.
pub fn client_request(data: &[u8]) {
    let body = Bytes::copy_from_slice(data);
    let items = match jsonrpc::decode(
        &body,
        Limits {
            max_batch_len: 100,
            version_1: false,
        },
    ) {
        Ok(Incoming::Single(item)) => vec![item],
        Ok(Incoming::Batch(items)) => {
            assert!(
                !items.is_empty() && items.len() <= 100,
                "batch of {}",
                items.len()
            );
            items
        }
        Err(e) => {
            let error = e.to_error_object().to_json();
            valid_json(&error, "a decode error");
            return;
        }
    };
    for item in items {
        match item {
            Item::Call(call) => {
                let sent = jsonrpc::encode_request(b"1", &call.method_json, call.params.as_deref());
                valid_json(&sent, "the request sent upstream");
                // The params as raw text: what the client sent is forwarded as it is, lone
                // surrogates included (the node answers those).
                let parsed: Sent<'_> = match serde_json::from_slice(&sent) {
                    Ok(s) => s,
                    Err(e) => panic!("the request sent upstream does not parse back: {e}"),
                };
                assert_eq!(
                    parsed.method, &*call.method,
                    "the method changed on the way"
                );
                assert_eq!(
                    parsed.params.map(RawValue::get).map(str::as_bytes),
                    call.params.as_deref(),
                    "the params changed on the way"
                );
                if let Some(id) = &call.id {
                    let answer =
                        jsonrpc::encode_response(id, &Payload::Result(Bytes::from_static(b"1")))
                            .concat();
                    valid_json(&answer, "an answer");
                }
            }
            Item::Invalid { id, error } => {
                let answer =
                    jsonrpc::encode_response(&id, &Payload::Error(error.to_json())).concat();
                valid_json(&answer, "an invalid item's answer");
            }
        }
    }
}

/// One upstream answer through the body reader and `read_reply`. The first byte picks the
/// status (200, 400, 429, 500, 503) and whether the body is gzip; the rest is the body.
pub fn upstream_reply(data: &[u8]) {
    let Some((&pick, body)) = data.split_first() else {
        return;
    };
    let status = match pick % 5 {
        0 => http::StatusCode::OK,
        1 => http::StatusCode::BAD_REQUEST,
        2 => http::StatusCode::TOO_MANY_REQUESTS,
        3 => http::StatusCode::INTERNAL_SERVER_ERROR,
        _ => http::StatusCode::SERVICE_UNAVAILABLE,
    };
    let encoding = if pick & 0x80 != 0 {
        Encoding::Gzip
    } else {
        Encoding::Identity
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
    {
        Ok(r) => r,
        Err(e) => panic!("runtime: {e}"),
    };
    let limit = AnswerLimit::unbudgeted(REPLY_LIMIT);
    let frames = body
        .chunks(997)
        .map(|c| Ok::<_, std::io::Error>(http_body::Frame::data(Bytes::copy_from_slice(c))))
        .collect::<Vec<_>>();
    let stream = http_body_util::StreamBody::new(futures_util::stream::iter(frames));
    let read = runtime.block_on(read_answer(stream, encoding, &limit));
    let Ok(body) = read else { return };
    assert!(
        body.len() <= REPLY_LIMIT,
        "an answer of {} bytes",
        body.len()
    );
    let reply = HttpReply {
        status,
        version: http::Version::HTTP_11,
        retry_after: None,
        body,
    };
    match read_reply(b"7", &reply, &[500, 404]) {
        Ok(Payload::Result(r)) => valid_json(&r, "a result taken"),
        Ok(Payload::Error(e)) => {
            valid_json(&e, "an error taken");
            assert!(e.starts_with(b"{"), "an error that is not an object");
        }
        Err(_) => {}
    }
}
