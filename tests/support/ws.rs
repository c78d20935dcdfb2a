//! A WebSocket JSON-RPC client for the tests (tokio-tungstenite): calls matched to their
//! answers by id, notifications kept in arrival order.

use std::collections::VecDeque;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// How long a test waits for one message.
pub const WAIT: Duration = Duration::from_secs(20);

pub struct WsClient {
    socket: WebSocketStream<MaybeTlsStream<TcpStream>>,
    notifications: VecDeque<Value>,
    next_id: u64,
}

/// What came instead of a message.
#[derive(Debug)]
pub enum Ended {
    Closed(Option<CloseFrame>),
    Gone,
}

impl WsClient {
    pub async fn connect(url: &str) -> WsClient {
        Self::upgraded(url, tokio_tungstenite::connect_async(url).await)
    }

    fn upgraded(
        url: &str,
        connected: Result<
            (
                WebSocketStream<MaybeTlsStream<TcpStream>>,
                tokio_tungstenite::tungstenite::handshake::client::Response,
            ),
            tokio_tungstenite::tungstenite::Error,
        >,
    ) -> WsClient {
        let (socket, resp) =
            connected.unwrap_or_else(|e| panic!("WebSocket connect to {url}: {e}"));
        assert_eq!(resp.status(), 101);
        WsClient {
            socket,
            notifications: VecDeque::new(),
            next_id: 1,
        }
    }

    /// Connect with a small receive buffer (4 KiB): a client that stops reading is seen
    /// falling behind after a few kilobytes rather than after the kernel's megabytes.
    pub async fn connect_small_buffer(url: &str, addr: std::net::SocketAddr) -> WsClient {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        let stream = socket.connect(addr).await.unwrap();
        Self::upgraded(
            url,
            tokio_tungstenite::client_async(url, MaybeTlsStream::Plain(stream)).await,
        )
    }

    pub async fn send_text(&mut self, text: &str) {
        self.socket
            .send(Message::text(text.to_string()))
            .await
            .unwrap();
    }

    /// The next JSON message (pings answered by tungstenite), or how the socket ended.
    pub async fn next_message(&mut self) -> Result<Value, Ended> {
        loop {
            let m = tokio::time::timeout(WAIT, self.socket.next())
                .await
                .expect("no WebSocket message in time");
            match m {
                Some(Ok(Message::Text(t))) => return Ok(serde_json::from_str(&t).unwrap()),
                Some(Ok(Message::Binary(b))) => return Ok(serde_json::from_slice(&b).unwrap()),
                Some(Ok(Message::Close(f))) => return Err(Ended::Closed(f)),
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return Err(Ended::Gone),
            }
        }
    }

    /// Send a raw message; the answer with `id` (notifications before it are kept).
    pub async fn ask(&mut self, text: &str, id: &Value) -> Value {
        self.send_text(text).await;
        loop {
            let v = self.next_message().await.expect("socket ended");
            if v.get("method") == Some(&json!("eth_subscription")) {
                self.notifications.push_back(v);
            } else if &v["id"] == id || v.is_array() {
                return v;
            } else {
                panic!("unexpected message {v}");
            }
        }
    }

    pub async fn call(&mut self, method: &str, params: Value) -> Value {
        let id = json!(self.next_id);
        self.next_id += 1;
        let body = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        self.ask(&body.to_string(), &id).await
    }

    /// `eth_subscribe(params)`: the subscription id.
    pub async fn subscribe(&mut self, params: Value) -> String {
        let v = self.call("eth_subscribe", params).await;
        v["result"]
            .as_str()
            .unwrap_or_else(|| panic!("no subscription: {v}"))
            .to_string()
    }

    /// The next notification: its subscription id and result.
    pub async fn notification(&mut self) -> (String, Value) {
        let v = match self.notifications.pop_front() {
            Some(v) => v,
            None => self
                .next_message()
                .await
                .unwrap_or_else(|e| panic!("socket ended: {e:?}")),
        };
        assert_eq!(v["method"], "eth_subscription", "{v}");
        (
            v["params"]["subscription"].as_str().unwrap().to_string(),
            v["params"]["result"].clone(),
        )
    }

    /// Read until the socket ends; the notifications read meanwhile are counted.
    pub async fn until_end(&mut self) -> (usize, Ended) {
        let mut n = 0;
        loop {
            match self.next_message().await {
                Ok(_) => n += 1,
                Err(e) => return (n, e),
            }
        }
    }
}
