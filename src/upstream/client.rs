//! The HTTP transport to one upstream: pooled keep-alive connections, TLS, timeouts, gzip.
//!
//! One `hyper_util` client per upstream, so that each has its own connection pool and
//! connect timeout. HTTPS goes through rustls with the webpki roots (no system OpenSSL) and
//! negotiates HTTP/2 by ALPN when the provider offers it; plain `http://` uses HTTP/1.1
//! keep-alive. The whole exchange, from sending to the last body byte, is bounded by the
//! upstream's `timeout`, and the body by `max_response_bytes`, compressed or not, and by the
//! process's budget of buffered answer bytes (`read_body`).
//!
//! At most `max_in_flight` attempts are sent at once (a semaphore; hyper's pool has no such
//! cap): over HTTP/1.1 each is a connection, and without a cap a burst of a thousand client
//! connections would open as many to the provider, which rate limits or refuses them, and
//! cost the proxy their buffers. Attempts over the cap wait their turn, within their
//! timeout. Health probes skip the queue: they must tell whether the node answers, not
//! how busy Manifold keeps it. The idle pool is bounded by the same number.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{ACCEPT_ENCODING, AUTHORIZATION, CONTENT_ENCODING, CONTENT_TYPE, RETRY_AFTER};
use http::{HeaderMap, HeaderValue, Request, StatusCode, Uri};
use http_body_util::Full;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tokio::sync::Semaphore;
use tokio::time::Instant;

use super::credentials::{take_credentials, CookieAuth};
use super::read_body::{read_answer, AnswerLimit, Encoding};
use crate::config::UpstreamConfig;

/// What came back over HTTP, body fully read and decompressed.
#[derive(Debug)]
pub struct HttpReply {
    pub status: StatusCode,
    /// HTTP/1.1, or HTTP/2 when negotiated by ALPN.
    pub version: http::Version,
    pub retry_after: Option<Duration>,
    pub body: Bytes,
}

/// The exchange failed below JSON-RPC: no usable HTTP response.
#[derive(Debug, Clone, thiserror::Error)]
pub enum TransportError {
    #[error("cannot connect: {0}")]
    Connect(String),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// Never sent: the `max_in_flight` slots open to it stayed busy for the whole time
    /// allowed (what was full, how long it waited).
    #[error("not sent: {0} for all of {1:?}")]
    Saturated(String, Duration),
    #[error("connection failed: {0}")]
    Io(String),
    #[error("answer larger than max_response_bytes ({0} bytes)")]
    TooLarge(usize),
    /// The answers held in memory were at `max_buffered_bytes` (this many) for all of
    /// `BUDGET_WAIT`.
    #[error("answers held in memory at max_buffered_bytes ({0} bytes): no room for this one")]
    OverBudget(usize),
    #[error("cannot decode response body: {0}")]
    Decode(String),
}

#[derive(Clone)]
pub struct UpstreamClient {
    http: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    uri: Uri,
    headers: HeaderMap,
    /// A node's cookie file (`rpccookiefile`): its credentials, read again as it changes.
    cookie: Option<Arc<CookieAuth>>,
    /// Where its WebSocket is (`ws_url`), with the same credentials and headers.
    socket: Option<super::socket::SocketTarget>,
    timeout: Duration,
    answers: AnswerLimit,
    /// One permit per attempt in flight (`max_in_flight`).
    slots: Arc<Semaphore>,
    max_in_flight: u32,
    /// Heavy calls (log scans, traces) hold one of these too: at most half the slots, so
    /// that a flood of them cannot keep ordinary calls (balances, nonces, receipts) out.
    heavy_slots: Arc<Semaphore>,
}

impl std::fmt::Debug for UpstreamClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Neither the URI nor the headers: both may hold credentials.
        f.debug_struct("UpstreamClient")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl UpstreamClient {
    /// A client that trusts the webpki roots (the Mozilla CA set), built in: no dependency on
    /// the host's CA bundle, same behaviour in a distroless container as on a laptop.
    pub fn new(cfg: &UpstreamConfig, answers: AnswerLimit) -> Result<Self, String> {
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS setup: {e}"))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Self::with_tls(cfg, answers, tls)
    }

    /// A client with the given TLS settings (ALPN is set here: h2, then http/1.1).
    pub fn with_tls(
        cfg: &UpstreamConfig,
        answers: AnswerLimit,
        tls: rustls::ClientConfig,
    ) -> Result<Self, String> {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(cfg.connect_timeout));
        http.set_keepalive(Some(Duration::from_secs(60)));
        let socket = cfg.ws.as_ref().map(|ws| {
            super::socket::SocketTarget::new(ws.url.clone(), &cfg.headers, &tls, cfg.timeout)
        });
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .timer(TokioTimer::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(usize::try_from(cfg.max_in_flight).unwrap_or(usize::MAX))
            // A silently dead HTTP/2 connection would otherwise hold every request sent on it
            // until TCP gives up, minutes later.
            .http2_keep_alive_interval(Duration::from_secs(15))
            .http2_keep_alive_timeout(Duration::from_secs(10))
            .http2_keep_alive_while_idle(true)
            .build(https);

        // Credentials in the URL (`https://user:key@host`) become a Basic header: they must
        // not travel in the request line, and the URI type does not carry them.
        let mut url = cfg.url.clone();
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.insert(ACCEPT_ENCODING, HeaderValue::from_static("gzip"));
        if let Some(value) = take_credentials(&mut url) {
            headers.insert(AUTHORIZATION, value);
        }
        if !url.username().is_empty() || url.password().is_some() {
            // They stayed: not valid header text.
            return Err("credentials in the URL are not valid header text".to_string());
        }
        for (name, value) in &cfg.headers {
            headers.insert(name.clone(), value.clone());
        }
        let uri: Uri = url
            .as_str()
            .parse()
            .map_err(|e| format!("URL is not a valid request URI: {e}"))?;
        Ok(Self {
            http: client,
            uri,
            headers,
            cookie: cfg
                .cookie_file
                .clone()
                .map(|p| Arc::new(CookieAuth::new(p))),
            socket,
            timeout: cfg.timeout,
            answers,
            slots: Arc::new(Semaphore::new(
                usize::try_from(cfg.max_in_flight).unwrap_or(Semaphore::MAX_PERMITS),
            )),
            max_in_flight: cfg.max_in_flight,
            heavy_slots: Arc::new(Semaphore::new(heavy_share(cfg.max_in_flight))),
        })
    }

    /// Where its WebSocket is, when it has one.
    pub fn socket(&self) -> Option<&super::socket::SocketTarget> {
        self.socket.as_ref()
    }

    /// The upstream's own `timeout` for an ordinary call.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// POST a JSON body and read the whole answer, within the upstream's `timeout`.
    pub async fn post(&self, body: Bytes) -> Result<HttpReply, TransportError> {
        self.post_within(body, self.timeout).await
    }

    /// As `post`, within `limit` (the call's deadline): the wait for a `max_in_flight`
    /// slot and then the exchange may each take up to the upstream's `timeout`, and together
    /// no longer than `limit`. An attempt never outlives the request it serves.
    pub async fn post_within(
        &self,
        body: Bytes,
        limit: Duration,
    ) -> Result<HttpReply, TransportError> {
        self.post_queued(body, limit, self.timeout, false).await
    }

    /// As `post_within`, bounded by `limit` alone: for calls slow by nature, which the
    /// chain's `heavy_request_timeout` bounds instead of the upstream's `timeout`. They
    /// take at most half the `max_in_flight` slots.
    pub async fn post_for(
        &self,
        body: Bytes,
        limit: Duration,
    ) -> Result<HttpReply, TransportError> {
        self.post_queued(body, limit, limit, true).await
    }

    /// Wait for a slot (at most `each`), then exchange (at most `each` from sending), all
    /// within `limit`. A `Timeout` carries the time the exchange itself was allowed, so that
    /// the caller can tell a node that had its whole timeout from one cut short.
    async fn post_queued(
        &self,
        body: Bytes,
        limit: Duration,
        each: Duration,
        heavy: bool,
    ) -> Result<HttpReply, TransportError> {
        let queued = Instant::now();
        let deadline = queued + limit;
        let wait_until = deadline.min(queued + each);
        let saturated = |what: String| TransportError::Saturated(what, queued.elapsed());
        let _heavy_slot = if heavy {
            slot(&self.heavy_slots, wait_until).await.map_err(|()| {
                saturated(format!(
                    "{} heavy calls in flight (half of max_in_flight)",
                    heavy_share(self.max_in_flight)
                ))
            })?
        } else {
            None
        };
        let _slot = slot(&self.slots, wait_until).await.map_err(|()| {
            saturated(format!(
                "{} attempts in flight (max_in_flight)",
                self.max_in_flight
            ))
        })?;
        let sent = Instant::now();
        let until = deadline.min(sent + each);
        self.exchange_until(body, until, until.saturating_duration_since(sent))
            .await
    }

    /// A health probe: as `post_within`, outside the `max_in_flight` cap.
    pub async fn probe(&self, body: Bytes, limit: Duration) -> Result<HttpReply, TransportError> {
        if let Some(cookie) = &self.cookie {
            cookie.refresh();
        }
        let limit = limit.min(self.timeout);
        self.exchange_until(body, Instant::now() + limit, limit)
            .await
    }

    async fn exchange_until(
        &self,
        body: Bytes,
        deadline: Instant,
        limit: Duration,
    ) -> Result<HttpReply, TransportError> {
        match tokio::time::timeout_at(deadline, self.exchange(body)).await {
            Ok(r) => r,
            Err(_) => Err(TransportError::Timeout(limit)),
        }
    }

    async fn exchange(&self, body: Bytes) -> Result<HttpReply, TransportError> {
        let mut req = Request::new(Full::new(body));
        *req.method_mut() = http::Method::POST;
        *req.uri_mut() = self.uri.clone();
        *req.headers_mut() = self.headers.clone();
        if let Some(value) = self.cookie.as_ref().and_then(|c| c.header()) {
            req.headers_mut().insert(AUTHORIZATION, value);
        }
        let resp = self.http.request(req).await.map_err(|e| {
            if e.is_connect() {
                TransportError::Connect(error_chain(&e))
            } else {
                TransportError::Io(error_chain(&e))
            }
        })?;
        let (parts, body) = resp.into_parts();
        let retry_after = parts
            .headers
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| retry_after(v, std::time::SystemTime::now()));
        let encoding = match parts
            .headers
            .get(CONTENT_ENCODING)
            .map(HeaderValue::as_bytes)
        {
            None | Some(b"identity") => Encoding::Identity,
            Some(b"gzip" | b"x-gzip") => Encoding::Gzip,
            Some(other) => {
                return Err(TransportError::Decode(format!(
                    "unsupported content-encoding {:?}",
                    String::from_utf8_lossy(other)
                )))
            }
        };
        let body = read_answer(body, encoding, &self.answers).await?;
        Ok(HttpReply {
            status: parts.status,
            version: parts.version,
            retry_after,
            body,
        })
    }
}

/// A permit of `slots`, waiting until `until` at most; `Ok(None)` if the semaphore is
/// closed (it never is; were it, sending beats failing).
async fn slot(
    slots: &Semaphore,
    until: Instant,
) -> Result<Option<tokio::sync::SemaphorePermit<'_>>, ()> {
    match tokio::time::timeout_at(until, slots.acquire()).await {
        Ok(Ok(permit)) => Ok(Some(permit)),
        Ok(Err(_)) => Ok(None),
        Err(_) => Err(()),
    }
}

/// The slots heavy calls may hold at once: half of `max_in_flight`, at least one.
fn heavy_share(max_in_flight: u32) -> usize {
    usize::try_from(max_in_flight / 2)
        .unwrap_or(Semaphore::MAX_PERMITS)
        .max(1)
}

/// "error trying to connect: tcp connect error: Connection refused (os error 111)": the
/// whole chain, since hyper's top-level message alone ("client error (Connect)") says little.
pub(super) fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    text
}

/// A `Retry-After` value (RFC 9110 §10.2.3): seconds, or an HTTP date, as a wait from `now`
/// (a date in the past: no wait).
fn retry_after(value: &str, now: std::time::SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_in_seconds_or_as_an_http_date() {
        let now = httpdate::parse_http_date("Tue, 01 Dec 2026 21:00:00 GMT").unwrap();
        assert_eq!(retry_after("7", now), Some(Duration::from_secs(7)));
        assert_eq!(
            retry_after("Tue, 01 Dec 2026 21:00:30 GMT", now),
            Some(Duration::from_secs(30))
        );
        // A date gone by: no wait. Garbage: none said.
        assert_eq!(
            retry_after("Tue, 01 Dec 2026 20:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(retry_after("soon", now), None);
    }
}
