//! Why a request was turned away before it reached a chain, for
//! `manifold_rejected_requests_total{reason}`: by the front door (HTTP) or at a WebSocket
//! upgrade (`ws`).

#[derive(Debug, Clone, Copy)]
pub enum Rejection {
    MethodNotAllowed,
    UnknownChain,
    UnsupportedMediaType,
    BodyTooLarge,
    BodyUnreadable,
    BodyTimeout,
    ParseError,
    InvalidRequest,
    /// Over `max_concurrent_calls`: shed at once (a request, or an item of a batch).
    Overloaded,
    /// Over `max_connections`: the connection was answered 503 and closed (counted by the
    /// listener).
    MaxConnections,
    /// The backstop timeout of the edge (a bug if ever seen).
    Backstop,
    /// A WebSocket upgrade from a browser at an origin not in `allowed_origins`.
    WsOrigin,
    /// A WebSocket upgrade over `websocket.max_connections`.
    WsMaxConnections,
    /// A WebSocket upgrade request that is not one (no key, another version, HTTP/2).
    WsBadUpgrade,
}

impl Rejection {
    pub const ALL: usize = 14;

    pub fn label(self) -> &'static str {
        match self {
            Rejection::MethodNotAllowed => "method_not_allowed",
            Rejection::UnknownChain => "unknown_chain",
            Rejection::UnsupportedMediaType => "unsupported_media_type",
            Rejection::BodyTooLarge => "body_too_large",
            Rejection::BodyUnreadable => "body_unreadable",
            Rejection::BodyTimeout => "body_timeout",
            Rejection::ParseError => "parse_error",
            Rejection::InvalidRequest => "invalid_request",
            Rejection::Overloaded => "overloaded",
            Rejection::MaxConnections => "max_connections",
            Rejection::Backstop => "backstop_timeout",
            Rejection::WsOrigin => "ws_origin",
            Rejection::WsMaxConnections => "ws_max_connections",
            Rejection::WsBadUpgrade => "ws_bad_upgrade",
        }
    }
}
