//! Error objects the proxy itself generates, and the table of their codes.
//!
//! Errors from upstreams are never built here: they are forwarded as the raw JSON text the
//! upstream sent. Only the proxy's own failures (bad client input, no upstream could answer)
//! are encoded from this type. The README's "Error codes" section mirrors [`codes`].

use bytes::Bytes;
use serde::Serialize;

/// JSON-RPC error codes the proxy generates.
///
/// The spec reserves -32768..-32000; `-32090..-32099` is Manifold's own block, chosen away
/// from the codes EIP-1474 and common node clients use (-32000..-32006), so that a client can
/// tell "the proxy could not get an answer" from "the node answered with an error".
pub mod codes {
    /// The body is not valid JSON.
    pub const PARSE_ERROR: i64 = -32700;
    /// Valid JSON, but not a JSON-RPC 2.0 request (also: empty batch, batch too long,
    /// body too large).
    pub const INVALID_REQUEST: i64 = -32600;
    /// A method Manifold serves itself does not exist (an `eth_subscribe` kind it does not
    /// offer).
    pub const METHOD_NOT_FOUND: i64 = -32601;
    /// A method Manifold serves itself got params it cannot use (`eth_subscribe`,
    /// `eth_unsubscribe`).
    pub const INVALID_PARAMS: i64 = -32602;
    /// The path names no configured chain (HTTP 404).
    pub const UNKNOWN_CHAIN: i64 = -32090;
    /// No upstream of the chain may serve this request (none configured for the method).
    pub const NO_UPSTREAM: i64 = -32091;
    /// Every attempt failed: transport error, HTTP error status or an unusable reply. The
    /// request may or may not have reached a node; reads are safe to retry.
    pub const UPSTREAM_FAILED: i64 = -32092;
    /// The request did not complete within the chain's `request_timeout`.
    pub const TIMEOUT: i64 = -32093;
    /// Every upstream tried answered "rate limited" (HTTP 429).
    pub const RATE_LIMITED: i64 = -32094;
    /// A limit of Manifold's was reached (EIP-1474's "limit exceeded"): over
    /// `max_concurrent_calls` (shed at once), an answer larger than `max_response_bytes`,
    /// no room in `max_buffered_bytes`. `data.reason` says which.
    pub const LIMIT_EXCEEDED: i64 = -32005;
}

/// A JSON-RPC error object built by the proxy.
#[derive(Debug, Clone, Serialize)]
pub struct ErrorObject {
    pub code: i64,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<serde_json::Value>,
}

impl ErrorObject {
    pub fn new(code: i64, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            data: None,
        }
    }

    pub fn with_data(mut self, data: serde_json::Value) -> Self {
        self.data = Some(data);
        self
    }

    pub fn parse_error(detail: impl std::fmt::Display) -> Self {
        Self::new(codes::PARSE_ERROR, format!("parse error: {detail}"))
    }

    pub fn invalid_request(detail: impl std::fmt::Display) -> Self {
        Self::new(codes::INVALID_REQUEST, format!("invalid request: {detail}"))
    }

    /// The object as JSON text, ready to be placed in a response.
    pub fn to_json(&self) -> Bytes {
        // Serializing a struct of a string, an integer and a `Value` cannot fail; the
        // fallback keeps the request path free of panics all the same.
        match serde_json::to_vec(self) {
            Ok(v) => Bytes::from(v),
            Err(_) => Bytes::from_static(br#"{"code":-32603,"message":"internal error"}"#),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serializes_without_data_when_absent() {
        let e = ErrorObject::new(-32600, "x");
        assert_eq!(&e.to_json()[..], br#"{"code":-32600,"message":"x"}"#);
    }

    #[test]
    fn serializes_data() {
        let e = ErrorObject::new(codes::NO_UPSTREAM, "none")
            .with_data(serde_json::json!({"chain": "ethereum"}));
        assert_eq!(
            &e.to_json()[..],
            br#"{"code":-32091,"message":"none","data":{"chain":"ethereum"}}"#
        );
    }
}
