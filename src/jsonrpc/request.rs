//! Decoding a request body into calls, following JSON-RPC 2.0 §4–§6.
//!
//! The body is parsed once, borrowing: `params` and `id` stay as slices of the body's
//! `Bytes` (no copy of a 275 KB blob transaction's params). Each batch item is validated on
//! its own, so one bad item yields one error object and the others still run (spec §6).

use std::borrow::Cow;

use bytes::Bytes;
use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;

use super::error::ErrorObject;
use super::method::Method;
use super::raw::{present, slice_of};

/// Limits applied while decoding.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_batch_len: usize,
    /// Take JSON-RPC 1.0 request objects too (`"jsonrpc"` absent, `"1.0"` or `"1.1"`), as
    /// Bitcoin Core's clients send them (`bitcoin-cli`, python-bitcoinrpc). The answers
    /// are 2.0's either way, which those clients read.
    pub version_1: bool,
}

/// The raw JSON text of a request id, exactly as the client sent it (string, number or
/// `null`), so that it can be returned byte-for-byte.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Id(Bytes);

impl Id {
    pub const NULL: Id = Id(Bytes::from_static(b"null"));

    pub fn as_bytes(&self) -> &Bytes {
        &self.0
    }
}

/// A valid request: something to send to an upstream.
#[derive(Debug, Clone)]
pub struct Call {
    /// `None` for a notification: the client expects no response object.
    pub id: Option<Id>,
    /// The method name, decoded (escapes resolved).
    pub method: Method,
    /// The method as JSON string text, as sent; forwarded without re-escaping.
    pub method_json: Bytes,
    /// The `params` JSON text, if present.
    pub params: Option<Bytes>,
}

/// One element of what the client sent.
#[derive(Debug, Clone)]
pub enum Item {
    Call(Call),
    /// Not a valid request object; answered with this error and the given id (the request's
    /// own id when it was readable, else `null`).
    Invalid {
        id: Id,
        error: ErrorObject,
    },
}

/// A decoded body.
#[derive(Debug, Clone)]
pub enum Incoming {
    Single(Item),
    Batch(Vec<Item>),
}

/// A body that cannot be decoded into items: answered with one error object, id `null`.
#[derive(Debug, Clone, thiserror::Error)]
pub enum DecodeError {
    #[error("parse error: {0}")]
    Parse(String),
    #[error("invalid request: empty batch")]
    EmptyBatch,
    #[error("invalid request: batch of {len} exceeds max_batch_len {max}")]
    BatchTooLong { len: usize, max: usize },
    #[error("invalid request: {0}")]
    NotRequest(&'static str),
}

impl DecodeError {
    pub fn to_error_object(&self) -> ErrorObject {
        match self {
            DecodeError::Parse(detail) => ErrorObject::parse_error(detail),
            DecodeError::EmptyBatch => ErrorObject::invalid_request("empty batch"),
            DecodeError::BatchTooLong { len, max } => ErrorObject::invalid_request(format!(
                "batch of {len} requests exceeds the limit of {max}"
            )),
            DecodeError::NotRequest(why) => ErrorObject::invalid_request(why),
        }
    }
}

/// Deepest nesting of arrays and objects accepted. serde_json's own limit (128) guards its
/// recursive parser, but raw values are skipped without one; no real request nests deeper.
pub const MAX_DEPTH: usize = 128;

/// Decode a request body.
pub fn decode(body: &Bytes, limits: Limits) -> Result<Incoming, DecodeError> {
    if nesting_exceeds(body, MAX_DEPTH) {
        return Err(DecodeError::NotRequest(
            "JSON nested deeper than 128 levels",
        ));
    }
    // Whole-body parse first: a syntax error anywhere is a parse error for the whole body
    // (spec §7: "rpc call Batch, invalid JSON" gets one -32700, not per-item errors).
    let top: &RawValue =
        serde_json::from_slice(body).map_err(|e| DecodeError::Parse(e.to_string()))?;
    match top.get().as_bytes().first() {
        Some(b'[') => {
            let mut de = serde_json::Deserializer::from_str(top.get());
            let items = BoundedItems {
                max: limits.max_batch_len,
            }
            .deserialize(&mut de)
            .map_err(|e| DecodeError::Parse(e.to_string()))?
            .map_err(|len| DecodeError::BatchTooLong {
                len,
                max: limits.max_batch_len,
            })?;
            if items.is_empty() {
                return Err(DecodeError::EmptyBatch);
            }
            Ok(Incoming::Batch(
                items
                    .into_iter()
                    .map(|raw| decode_item(body, raw, limits.version_1))
                    .collect(),
            ))
        }
        Some(b'{') => Ok(Incoming::Single(decode_item(body, top, limits.version_1))),
        _ => Err(DecodeError::NotRequest(
            "expected a request object or a batch array",
        )),
    }
}

/// A batch's items, kept only up to `max`: a 10 MB `[1,1,1,...]` is counted, not stored.
/// `Err(len)` when there are more than `max`.
struct BoundedItems {
    max: usize,
}

impl<'de> DeserializeSeed<'de> for BoundedItems {
    type Value = Result<Vec<&'de RawValue>, usize>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for BoundedItems {
    type Value = Result<Vec<&'de RawValue>, usize>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a batch array")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<&'de RawValue>()? {
            if items.len() == self.max {
                let mut len = self.max + 1;
                while seq.next_element::<IgnoredAny>()?.is_some() {
                    len += 1;
                }
                return Ok(Err(len));
            }
            items.push(item);
        }
        Ok(Ok(items))
    }
}

/// The fields of a request object, borrowed from the body. `Option<Option<..>>`-like
/// handling of `id` is done by `present`: an absent id (notification) differs from
/// `"id": null` (a request whose answer has id null).
#[derive(Deserialize)]
struct RawRequest<'a> {
    #[serde(borrow, default, deserialize_with = "present")]
    jsonrpc: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    method: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    params: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    id: Option<&'a RawValue>,
}

fn decode_item(body: &Bytes, raw: &RawValue, version_1: bool) -> Item {
    let invalid = |id: Id, why: &str| Item::Invalid {
        id,
        error: ErrorObject::invalid_request(why),
    };
    if !raw.get().starts_with('{') {
        return invalid(Id::NULL, "a request must be a JSON object");
    }
    let req: RawRequest<'_> = match serde_json::from_str(raw.get()) {
        Ok(r) => r,
        Err(e) => {
            return Item::Invalid {
                id: Id::NULL,
                error: ErrorObject::invalid_request(e),
            }
        }
    };
    let id = match req.id {
        None => None,
        Some(v) if is_valid_id(v) => Some(Id(slice_of(body, v.get()))),
        Some(_) => return invalid(Id::NULL, "id must be a string, a number or null"),
    };
    let reply_id = id.clone().unwrap_or(Id::NULL);
    // `"2.0"` as every client writes it, without decoding; an escaped spelling decoded.
    let version_ok = match req.jsonrpc {
        Some(v) if v.get() == r#""2.0""# => true,
        Some(v) => serde_json::from_str::<String>(v.get())
            .is_ok_and(|v| v == "2.0" || (version_1 && (v == "1.0" || v == "1.1"))),
        None => version_1,
    };
    if !version_ok {
        return invalid(reply_id, "jsonrpc must be \"2.0\"");
    }
    let Some(method_raw) = req.method else {
        return invalid(reply_id, "missing method");
    };
    // Borrowed when it has no escapes (serde's `Cow<str>` would always copy).
    let method = match serde_json::from_str::<&str>(method_raw.get()) {
        Ok(m) => Cow::Borrowed(m),
        Err(_) => match serde_json::from_str::<String>(method_raw.get()) {
            Ok(m) => Cow::Owned(m),
            Err(_) => return invalid(reply_id, "method must be a string"),
        },
    };
    let params = match req.params {
        None => None,
        Some(p) if matches!(p.get().as_bytes().first(), Some(b'[' | b'{')) => {
            Some(slice_of(body, p.get()))
        }
        // `null` params are what some clients send for "no params"; forwarded as sent.
        Some(p) if p.get() == "null" => Some(slice_of(body, p.get())),
        Some(_) => return invalid(reply_id, "params must be an array or an object"),
    };
    Item::Call(Call {
        id,
        method: Method::from_body(body, &method),
        method_json: slice_of(body, method_raw.get()),
        params,
    })
}

/// One pass over the bytes, tracking depth outside strings. Runs before parsing so that a
/// hostile body is rejected before any work is spent on it.
fn nesting_exceeds(body: &[u8], max: usize) -> bool {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for &b in body {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > max {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

fn is_valid_id(v: &RawValue) -> bool {
    matches!(v.get().as_bytes().first(), Some(b'"' | b'-' | b'0'..=b'9')) || v.get() == "null"
}

/// `{"jsonrpc":"2.0","id":<id>,"method":<method_json>,"params":<params>}`: a request to an
/// upstream, with the proxy's own id (so that the client's id never depends on how an
/// upstream treats ids), and method and params as the client sent them, unescaped nothing.
pub fn encode_request(id: &[u8], method_json: &[u8], params: Option<&[u8]>) -> Bytes {
    use bytes::{BufMut, BytesMut};
    let params_len = params.map_or(0, <[u8]>::len);
    let mut buf = BytesMut::with_capacity(48 + id.len() + method_json.len() + params_len);
    buf.put_slice(br#"{"jsonrpc":"2.0","id":"#);
    buf.put_slice(id);
    buf.put_slice(br#","method":"#);
    buf.put_slice(method_json);
    if let Some(params) = params {
        buf.put_slice(br#","params":"#);
        buf.put_slice(params);
    }
    buf.put_u8(b'}');
    buf.freeze()
}

#[cfg(test)]
#[path = "request_tests.rs"]
mod tests;
