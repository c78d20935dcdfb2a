//! Opening an upstream socket: TCP (and TLS for `wss://`, with the HTTP client's roots),
//! then the WebSocket upgrade with the upstream's credentials and headers, all within the
//! upstream's `timeout`.

use std::sync::Arc;
use std::time::Duration;

use http::header::AUTHORIZATION;
use http::{HeaderName, HeaderValue, StatusCode};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Error;
use tokio_tungstenite::WebSocketStream;
use url::Url;

/// The largest message an upstream socket may send: a head is a few kilobytes, a pending
/// transaction a hash; anything near this is not what was subscribed to.
const MAX_MESSAGE: usize = 4 << 20;

pub trait Io: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Io for T {}

pub type Socket = WebSocketStream<Box<dyn Io>>;

/// Where and how to open one upstream's socket.
#[derive(Clone)]
pub struct SocketTarget {
    /// Without credentials: they travel as `Authorization`, as over HTTP.
    url: Url,
    headers: Vec<(HeaderName, HeaderValue)>,
    tls: Arc<rustls::ClientConfig>,
    timeout: Duration,
}

impl std::fmt::Debug for SocketTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Neither the URL nor the headers: both may hold credentials.
        f.debug_struct("SocketTarget")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// Why a socket did not open.
#[derive(Debug)]
pub enum ConnectError {
    /// The upgrade was answered with this status: no WebSocket at this URL.
    Refused(StatusCode),
    /// No connection, TLS failed, no answer in time, or not a WebSocket answer.
    Failed(String),
}

impl SocketTarget {
    /// `url`'s credentials (a derived URL has the HTTP URL's) become `Authorization`.
    pub fn new(
        mut url: Url,
        extra: &[(HeaderName, HeaderValue)],
        tls: &rustls::ClientConfig,
        timeout: Duration,
    ) -> Self {
        let mut headers = Vec::new();
        if let Some(a) = crate::upstream::credentials::take_credentials(&mut url) {
            headers.push((AUTHORIZATION, a));
        }
        headers.extend(extra.iter().cloned());
        let mut tls = tls.clone();
        // A WebSocket upgrade is an HTTP/1.1 request.
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        Self {
            url,
            headers,
            tls: Arc::new(tls),
            timeout,
        }
    }

    pub async fn connect(&self) -> Result<Socket, ConnectError> {
        match tokio::time::timeout(self.timeout, self.open()).await {
            Ok(r) => r,
            Err(_) => Err(ConnectError::Failed(format!(
                "no WebSocket within {}",
                humantime::format_duration(self.timeout)
            ))),
        }
    }

    async fn open(&self) -> Result<Socket, ConnectError> {
        let failed =
            |what: &str, e: &dyn std::fmt::Display| ConnectError::Failed(format!("{what}: {e}"));
        let host = self
            .url
            .host()
            .ok_or_else(|| ConnectError::Failed("no host".into()))?;
        let port = self
            .url
            .port_or_known_default()
            .ok_or_else(|| ConnectError::Failed("no port".into()))?;
        let tcp = TcpStream::connect(format!("{host}:{port}"))
            .await
            .map_err(|e| failed("connect", &e))?;
        let _ = tcp.set_nodelay(true);
        let io: Box<dyn Io> = if self.url.scheme() == "wss" {
            let name = match host {
                url::Host::Domain(d) => rustls::pki_types::ServerName::try_from(d.to_string())
                    .map_err(|e| failed("TLS name", &e))?,
                url::Host::Ipv4(ip) => std::net::IpAddr::V4(ip).into(),
                url::Host::Ipv6(ip) => std::net::IpAddr::V6(ip).into(),
            };
            let tls = tokio_rustls::TlsConnector::from(self.tls.clone())
                .connect(name, tcp)
                .await
                .map_err(|e| failed("TLS", &e))?;
            Box::new(tls)
        } else {
            Box::new(tcp)
        };
        let mut request = self
            .url
            .as_str()
            .into_client_request()
            .map_err(|e| failed("request", &e))?;
        for (name, value) in &self.headers {
            request.headers_mut().insert(name.clone(), value.clone());
        }
        let config = WebSocketConfig::default()
            .max_message_size(Some(MAX_MESSAGE))
            .max_frame_size(Some(MAX_MESSAGE));
        match tokio_tungstenite::client_async_with_config(request, io, Some(config)).await {
            Ok((socket, _)) => Ok(socket),
            Err(Error::Http(answer)) => Err(ConnectError::Refused(answer.status())),
            Err(e) => Err(failed("upgrade", &e)),
        }
    }
}
