//! A TCP path in front of a real node: bytes copied both ways, whatever they carry (HTTP
//! calls and WebSocket upgrades alike, as anvil serves both on one port), and switched at
//! run time to fail as a network does.
//!
//! - `cut`: every connection is closed at once and new ones are closed on accept (a region
//!   gone, a firewall that rejects).
//! - `freeze`: connections stay open and new ones are accepted, but no byte moves either
//!   way (a black-holed route: a socket that stays open but stops delivering).
//! - `restore`: bytes move again, on the frozen connections too.
//!
//! Every task ends with the `TcpPath`: the accept task owns the connection tasks.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Pass,
    Cut,
    Freeze,
}

pub struct TcpPath {
    addr: SocketAddr,
    mode: watch::Sender<Mode>,
    open: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl Drop for TcpPath {
    fn drop(&mut self) {
        // Aborting drops the task's `JoinSet`, which aborts every connection task.
        self.task.abort();
    }
}

impl TcpPath {
    /// Listen on a free port, forwarding to `target_url`'s host and port.
    pub async fn start(target_url: &str) -> TcpPath {
        let target: http::Uri = target_url.parse().unwrap();
        let target = format!("{}:{}", target.host().unwrap(), target.port_u16().unwrap());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mode = watch::channel(Mode::Pass).0;
        let open = Arc::new(AtomicUsize::new(0));
        let task = tokio::spawn(accept(listener, target, mode.subscribe(), open.clone()));
        TcpPath {
            addr,
            mode,
            open,
            task,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Close every connection, and each new one on accept; returns once all are closed.
    pub async fn cut(&self) {
        self.mode.send_replace(Mode::Cut);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while self.open.load(Ordering::SeqCst) > 0 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "connections stayed open after a cut"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Stop every byte, keeping the connections.
    pub fn freeze(&self) {
        self.mode.send_replace(Mode::Freeze);
    }

    /// Pass bytes again.
    pub fn restore(&self) {
        self.mode.send_replace(Mode::Pass);
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }
}

async fn accept(
    listener: TcpListener,
    target: String,
    mode: watch::Receiver<Mode>,
    open: Arc<AtomicUsize>,
) {
    let mut connections = JoinSet::new();
    loop {
        let Ok((client, _)) = listener.accept().await else {
            continue;
        };
        // Reap the finished ones, so that the set stays small.
        while connections.try_join_next().is_some() {}
        if *mode.borrow() == Mode::Cut {
            drop(client);
            continue;
        }
        let (target, mode, open) = (target.clone(), mode.clone(), open.clone());
        connections.spawn(async move {
            let Ok(server) = TcpStream::connect(&target).await else {
                return;
            };
            open.fetch_add(1, Ordering::SeqCst);
            let (cr, cw) = client.into_split();
            let (sr, sw) = server.into_split();
            // Either way ending (a close, an error, a cut) ends both.
            tokio::select! {
                () = pump(cr, sw, mode.clone()) => {}
                () = pump(sr, cw, mode) => {}
            }
            open.fetch_sub(1, Ordering::SeqCst);
        });
    }
}

/// Copy `from` to `to` while the mode passes; wait while frozen; end on a cut.
async fn pump(
    mut from: impl AsyncRead + Unpin,
    mut to: impl AsyncWrite + Unpin,
    mut mode: watch::Receiver<Mode>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        if !passing(&mut mode).await {
            return;
        }
        let n = tokio::select! {
            read = from.read(&mut buf) => match read {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            },
            // Looked at again above.
            _ = mode.changed() => continue,
        };
        // Read before a freeze: held until it thaws.
        if !passing(&mut mode).await || to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

/// Wait while frozen: `false` on a cut (or the path gone).
async fn passing(mode: &mut watch::Receiver<Mode>) -> bool {
    loop {
        match *mode.borrow_and_update() {
            Mode::Pass => return true,
            Mode::Cut => return false,
            Mode::Freeze => {}
        }
        if mode.changed().await.is_err() {
            return false;
        }
    }
}
