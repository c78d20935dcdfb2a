//! `[server.tls]`: the JSON-RPC listener over TLS, HTTP/1.1 and HTTP/2 by ALPN.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use manifold::config::Config;
use manifold::upstream::AnswerLimit;
use support::*;

struct Certs {
    dir: PathBuf,
    cert_pem: String,
}

fn self_signed(tag: &str) -> Certs {
    let cert =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    let dir = std::env::temp_dir().join(format!("manifold-tls-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cert_pem = cert.cert.pem();
    std::fs::write(dir.join("cert.pem"), &cert_pem).unwrap();
    std::fs::write(dir.join("key.pem"), cert.key_pair.serialize_pem()).unwrap();
    Certs { dir, cert_pem }
}

/// A rustls client configuration that trusts exactly the given self-signed certificate.
fn trusting(certs: &Certs) -> rustls::ClientConfig {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls::pki_types::CertificateDer::pem_slice_iter(certs.cert_pem.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth()
}

fn client(
    certs: &Certs,
    http2: bool,
) -> Client<
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
    Full<Bytes>,
> {
    let tls = trusting(certs);
    let b = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_only();
    let connector = if http2 {
        b.enable_http2().build()
    } else {
        b.enable_http1().build()
    };
    Client::builder(TokioExecutor::new())
        .http2_only(http2)
        .build(connector)
}

/// Manifold serving TLS with `certs`, in front of an upstream that answers `"0x5"`.
async fn tls_proxy(certs: &Certs) -> (FakeUpstream, manifold::server::Running) {
    let up = FakeUpstream::ok(r#""0x5""#).await;
    let cfg = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n[server.tls]\ncert = \"{}\"\nkey = \"{}\"\n{}",
        certs.dir.join("cert.pem").display(),
        certs.dir.join("key.pem").display(),
        chain_config(&[&up.url], "")
    );
    let proxy = start_proxy(&cfg).await;
    (up, proxy)
}

#[tokio::test]
async fn serves_json_rpc_over_tls_with_h1_and_h2() {
    let certs = self_signed("ok");
    let (_up, proxy) = tls_proxy(&certs).await;
    let url = format!("https://localhost:{}/eth", proxy.rpc_addr.port());
    for http2 in [false, true] {
        let req = http::Request::post(&url)
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from_static(
                br#"{"jsonrpc":"2.0","id":1,"method":"web3_clientVersion"}"#,
            )))
            .unwrap();
        let resp = client(&certs, http2)
            .request(req)
            .await
            .expect("TLS request");
        assert_eq!(
            resp.version(),
            if http2 {
                http::Version::HTTP_2
            } else {
                http::Version::HTTP_11
            }
        );
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], br#"{"jsonrpc":"2.0","id":1,"result":"0x5"}"#);
    }
    // Plain HTTP on the TLS port is refused, and the listener keeps serving.
    let plain = HttpClient::new();
    let r = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        plain.inner_request_fails(&format!("http://127.0.0.1:{}/eth", proxy.rpc_addr.port())),
    )
    .await
    .expect("plain HTTP answered or refused promptly");
    assert!(r, "plain HTTP must not be served on the TLS port");
    let _ = std::fs::remove_dir_all(&certs.dir);
}

#[test]
fn bad_tls_files_are_config_errors() {
    let certs = self_signed("bad");
    let other = self_signed("other");
    let cfg = |cert: &str, key: &str| {
        format!(
            "[server]\n[server.tls]\ncert = \"{cert}\"\nkey = \"{key}\"\n{}",
            chain_config(&["http://127.0.0.1:8545"], "")
        )
    };
    let env = |_: &str| None;
    let cert = certs.dir.join("cert.pem").display().to_string();
    let key = certs.dir.join("key.pem").display().to_string();
    let e = Config::from_toml(&cfg("/nonexistent.pem", &key), "t.toml", &env)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("t.toml: server.tls.cert: cannot read PEM certificates from `/nonexistent.pem`"),
        "{e}"
    );
    let e = Config::from_toml(&cfg(&cert, &cert), "t.toml", &env)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("t.toml: server.tls.key: cannot read a PEM private key"),
        "{e}"
    );
    let wrong_key = other.dir.join("key.pem").display().to_string();
    let e = Config::from_toml(&cfg(&cert, &wrong_key), "t.toml", &env)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("t.toml: server.tls: certificate and key do not form a usable pair"),
        "{e}"
    );
    assert!(Config::from_toml(&cfg(&cert, &key), "t.toml", &env).is_ok());
    let _ = std::fs::remove_dir_all(&certs.dir);
    let _ = std::fs::remove_dir_all(&other.dir);
}

/// The upstream client negotiates HTTP/2 by ALPN with an HTTPS upstream (here: Manifold's own
/// TLS listener, trusted through a test root) and keeps using the connection.
#[tokio::test]
async fn upstream_client_speaks_http2_over_tls() {
    use manifold::upstream::UpstreamClient;
    let certs = self_signed("upstream");
    let up = FakeUpstream::ok(r#""0x6""#).await;
    let cfg = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n[server.tls]\ncert = \"{}\"\nkey = \"{}\"\n{}",
        certs.dir.join("cert.pem").display(),
        certs.dir.join("key.pem").display(),
        chain_config(&[&up.url], "")
    );
    let tls_proxy = start_proxy(&cfg).await;
    let upstream_cfg = Config::from_toml(
        &chain_config(
            &[&format!(
                "https://localhost:{}/eth",
                tls_proxy.rpc_addr.port()
            )],
            "",
        ),
        "t.toml",
        &|_| None,
    )
    .unwrap()
    .chains[0]
        .upstreams[0]
        .clone();
    let tls = trusting(&certs);
    let client =
        UpstreamClient::with_tls(&upstream_cfg, AnswerLimit::unbudgeted(1 << 20), tls).unwrap();
    for _ in 0..3 {
        let reply = client
            .post(Bytes::from_static(
                br#"{"jsonrpc":"2.0","id":1,"method":"web3_clientVersion"}"#,
            ))
            .await
            .unwrap();
        assert_eq!(reply.version, http::Version::HTTP_2);
        assert_eq!(
            &reply.body[..],
            br#"{"jsonrpc":"2.0","id":1,"result":"0x6"}"#
        );
    }
    // The default client does not trust a self-signed certificate: a clear TLS error.
    let err = UpstreamClient::new(&upstream_cfg, AnswerLimit::unbudgeted(1 << 20))
        .unwrap()
        .post(Bytes::from_static(b"{}"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("cannot connect"), "{err}");
    let _ = std::fs::remove_dir_all(&certs.dir);
}

#[tokio::test]
async fn serves_websocket_over_tls() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let certs = self_signed("wss");
    let (_up, proxy) = tls_proxy(&certs).await;
    let tcp = tokio::net::TcpStream::connect(proxy.rpc_addr)
        .await
        .unwrap();
    let mut tls = trusting(&certs);
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    let tls = tokio_rustls::TlsConnector::from(Arc::new(tls))
        .connect("localhost".try_into().unwrap(), tcp)
        .await
        .expect("TLS handshake");
    let url = format!("wss://localhost:{}/eth", proxy.rpc_addr.port());
    let (mut ws, resp) = tokio_tungstenite::client_async(url, tls)
        .await
        .expect("WebSocket upgrade over TLS");
    assert_eq!(resp.status(), 101);
    for (body, want) in [
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"web3_clientVersion"}"#,
            serde_json::json!("0x5"),
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"eth_subscribe","params":["newHeads"]}"#,
            serde_json::Value::Null,
        ),
    ] {
        ws.send(Message::text(body)).await.unwrap();
        let Some(Ok(Message::Text(t))) = ws.next().await else {
            panic!("no answer over wss");
        };
        let v: serde_json::Value = serde_json::from_str(&t).unwrap();
        if want.is_null() {
            assert!(v["result"].as_str().unwrap().starts_with("0x"), "{v}");
        } else {
            assert_eq!(v["result"], want, "{v}");
        }
    }
    let _ = std::fs::remove_dir_all(&certs.dir);
}
