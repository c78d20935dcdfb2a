//! A real Redis server on a free loopback port, killed when dropped, and a few raw RESP
//! commands to look inside it.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

pub struct RedisServer {
    child: Option<Child>,
    pub port: u16,
    pub url: String,
}

fn redis_server_bin() -> PathBuf {
    if let Ok(p) = std::env::var("REDIS_SERVER_BIN") {
        return PathBuf::from(p);
    }
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join("redis-server"))
        .find(|p| p.exists())
        .unwrap_or_else(|| {
            panic!("redis-server not found: `apt-get install redis-server` (bash .ci/run does), or set REDIS_SERVER_BIN")
        })
}

impl RedisServer {
    pub async fn start() -> RedisServer {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        Self::start_on(port).await
    }

    /// The server `.ci/run` started for the tests (`MANIFOLD_TEST_REDIS_URL`), else one of
    /// this test's own. Tests sharing it keep to their own key prefix.
    pub async fn shared() -> RedisServer {
        let Ok(url) = std::env::var("MANIFOLD_TEST_REDIS_URL") else {
            return Self::start().await;
        };
        let port = url
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("MANIFOLD_TEST_REDIS_URL: no port in {url}"));
        RedisServer {
            child: None,
            port,
            url,
        }
    }

    /// On `port` (again, after `kill`): nothing kept from before (no persistence).
    pub async fn start_on(port: u16) -> RedisServer {
        let child = Command::new(redis_server_bin())
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .args(["--loglevel", "warning"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn redis-server");
        let server = RedisServer {
            child: Some(child),
            port,
            url: format!("redis://127.0.0.1:{port}"),
        };
        tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                if let Ok(reply) = server.try_command(&["PING"]).await {
                    if reply == "PONG" {
                        return;
                    }
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .expect("redis-server did not answer PING within 10 s");
        server
    }

    /// SIGKILL, and wait until it is gone.
    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().await.unwrap();
        }
    }

    /// One command; its reply as text (an array's elements joined by newlines).
    pub async fn command(&self, args: &[&str]) -> String {
        self.try_command(args).await.unwrap()
    }

    async fn try_command(&self, args: &[&str]) -> std::io::Result<String> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).await?;
        let mut request = format!("*{}\r\n", args.len());
        for a in args {
            request.push_str(&format!("${}\r\n{a}\r\n", a.len()));
        }
        stream.write_all(request.as_bytes()).await?;
        let mut reader = BufReader::new(stream);
        Box::pin(read_reply(&mut reader)).await
    }
}

async fn read_reply(r: &mut BufReader<TcpStream>) -> std::io::Result<String> {
    let mut line = String::new();
    r.read_line(&mut line).await?;
    let line = line.trim_end().to_string();
    let (kind, rest) = line.split_at(1.min(line.len()));
    match kind {
        "+" | "-" | ":" => Ok(rest.to_string()),
        "$" => {
            let Ok(len) = rest.parse::<usize>() else {
                return Ok(String::new()); // $-1: nil
            };
            let mut buf = vec![0; len + 2];
            r.read_exact(&mut buf).await?;
            buf.truncate(len);
            Ok(String::from_utf8_lossy(&buf).into_owned())
        }
        "*" => {
            let n = rest.parse::<usize>().unwrap_or(0);
            let mut items = Vec::new();
            for _ in 0..n {
                items.push(Box::pin(read_reply(r)).await?);
            }
            Ok(items.join("\n"))
        }
        _ => Err(std::io::Error::other(format!("not RESP: {line}"))),
    }
}
