//! A fixed-answer JSON-RPC upstream, as cheap as it can be: the benchmarks' stand-in for a
//! node, so that what they measure is the proxy in front of it.
//!
//! Shared by `examples/fixed_upstream.rs` (the load script's upstream, behind every target
//! alike) and `benches/hot_path.rs` (in-process). A fixed nginx `return 200 '...'` cannot
//! serve here: Manifold sends its own ids upstream and checks that the answer carries the
//! same one, and its health probes (`eth_chainId`, `eth_blockNumber`, `eth_syncing`) each
//! need their own answer. So this echoes the request's id and answers by method.
//!
//! `hang` turns it into a blackhole: connections stay open and requests, on new and
//! kept-alive connections alike, are never answered (a node that has stopped responding).

use std::borrow::Cow;
use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use http::header::CONTENT_TYPE;
use http::{HeaderValue, Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use serde::Deserialize;
use serde_json::value::RawValue;
use tokio::net::TcpListener;

/// What the upstream answers.
#[derive(Debug)]
pub struct Answers {
    /// `eth_chainId`'s result, JSON text (e.g. `"0x1"`).
    chain_id: String,
    /// When set, nothing is answered any more.
    pub hang: AtomicBool,
}

impl Answers {
    pub fn new(chain_id: u64) -> Arc<Self> {
        Arc::new(Self {
            chain_id: format!("\"0x{chain_id:x}\""),
            hang: AtomicBool::new(false),
        })
    }

    /// The result for `method`, JSON text.
    fn result(&self, method: &str) -> &str {
        match method {
            "eth_chainId" => &self.chain_id,
            "eth_syncing" => "false",
            "eth_getBalance" => "\"0x21e19e0c9bab2400000\"",
            // eth_blockNumber, and anything else.
            _ => "\"0x10\"",
        }
    }
}

#[derive(Deserialize)]
struct Call<'a> {
    #[serde(borrow, default)]
    id: Option<&'a RawValue>,
    #[serde(borrow, default)]
    method: Cow<'a, str>,
}

fn answer_one(answers: &Answers, call: &Call<'_>, out: &mut BytesMut) {
    out.put_slice(br#"{"jsonrpc":"2.0","id":"#);
    out.put_slice(call.id.map_or("null", |id| id.get()).as_bytes());
    out.put_slice(br#","result":"#);
    out.put_slice(answers.result(&call.method).as_bytes());
    out.put_u8(b'}');
}

/// The answer to one HTTP body: a single call or a batch.
pub fn answer(answers: &Answers, body: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(128);
    let trimmed = body.iter().position(|b| !b.is_ascii_whitespace());
    if trimmed.and_then(|i| body.get(i)) == Some(&b'[') {
        match serde_json::from_slice::<Vec<Call<'_>>>(body) {
            Ok(calls) => {
                out.put_u8(b'[');
                for (i, call) in calls.iter().enumerate() {
                    if i > 0 {
                        out.put_u8(b',');
                    }
                    answer_one(answers, call, &mut out);
                }
                out.put_u8(b']');
            }
            Err(_) => out.put_slice(PARSE_ERROR),
        }
    } else {
        match serde_json::from_slice::<Call<'_>>(body) {
            Ok(call) => answer_one(answers, &call, &mut out),
            Err(_) => out.put_slice(PARSE_ERROR),
        }
    }
    out.freeze()
}

const PARSE_ERROR: &[u8] =
    br#"{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"parse error"}}"#;

async fn handle(
    answers: Arc<Answers>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    if answers.hang.load(Ordering::Relaxed) {
        std::future::pending::<()>().await;
    }
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => Bytes::new(),
    };
    if answers.hang.load(Ordering::Relaxed) {
        std::future::pending::<()>().await;
    }
    let mut resp = Response::new(Full::new(answer(&answers, &body)));
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Ok(resp)
}

/// Serve `listener` (HTTP/1.1 keep-alive and h2c) until the task is dropped.
pub async fn serve(listener: TcpListener, answers: Arc<Answers>) {
    let builder = auto::Builder::new(TokioExecutor::new());
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            // Out of file descriptors: back off rather than spin.
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            continue;
        };
        let _ = stream.set_nodelay(true);
        let answers = answers.clone();
        let builder = builder.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| handle(answers.clone(), req));
            let _ = builder
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
