//! Starting and stopping a Manifold instance: bind both listeners, serve until told to stop.

mod edge;
mod listener;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinHandle;

use crate::admin::Admin;
use crate::chain::{RedisCache, Shared};
use crate::config::Config;
use crate::frontdoor::FrontDoor;
use crate::metrics::{LimitGauges, Metrics};
use crate::snapshot::{SharedSnapshot, Snapshot};
use crate::upstream::AnswerBudget;
use crate::watch::TxStore;
use crate::ws::WsHub;

pub use listener::ConnectionLimit;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot listen on {addr} ({what}): {source}")]
    Bind {
        what: &'static str,
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("{0}")]
    Setup(String),
}

/// How often histogram samples are folded into their buckets when nobody scrapes: a
/// second of samples at most is held raw (at 60k calls a second, a few MB).
const METRICS_UPKEEP: std::time::Duration = std::time::Duration::from_secs(1);

/// Connections the admin listener holds open at once: probes and scrapes, a few at a time.
const ADMIN_MAX_CONNECTIONS: usize = 128;

/// The edge's backstop for one whole request: past the body's read timeout and the longest
/// call deadline of any chain, with a margin. Reaching it means a deadline inside failed.
fn backstop(config: &Config) -> std::time::Duration {
    let longest = config
        .chains
        .iter()
        .map(|c| c.policy.heavy_request_timeout.max(c.policy.request_timeout))
        .max()
        .unwrap_or_default();
    crate::frontdoor::BODY_READ_TIMEOUT + longest + std::time::Duration::from_secs(5)
}

/// A running instance. Dropping it does not stop it: call [`Running::shutdown`].
#[derive(Debug)]
pub struct Running {
    /// The JSON-RPC address actually bound (port 0 in the config picks a free one).
    pub rpc_addr: SocketAddr,
    pub admin_addr: SocketAddr,
    pub snapshot: SharedSnapshot,
    pub metrics: Arc<Metrics>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

/// Bind the listeners and start serving `config`.
pub async fn start(config: Config) -> Result<Running, StartError> {
    for w in &config.warnings {
        tracing::warn!("{w}");
    }
    let metrics = Metrics::new();
    // One budget for every chain's answers, for as long as the process runs.
    let budget = AnswerBudget::new(config.server.max_buffered_bytes);
    let grace = config.server.shutdown_timeout;
    let rpc_addr = config.server.listen;
    let admin_addr = config.server.admin_listen;
    // One store for every chain's transaction watch, opened only when some chain watches.
    let store = match &config.server.tx_store {
        Some(path) if config.chains.iter().any(|c| c.policy.broadcast.watch) => {
            Some(TxStore::open(path).map_err(|e| {
                StartError::Setup(format!(
                    "server.tx_store: {e} (set `tx_store` to a writable path, \":memory:\", or `watch = false` under [chains.policy.broadcast])"
                ))
            })?)
        }
        _ => None,
    };
    let redis = match &config.server.redis {
        Some(r) => Some(RedisCache::new(r, &metrics).map_err(StartError::Setup)?),
        None => None,
    };
    let shared = Shared {
        metrics: metrics.clone(),
        store,
        budget: budget.clone(),
        redis,
        subscriptions: config.server.websocket.enabled,
        sockets: crate::upstream::socket::Timing {
            ping_interval: config.server.websocket.ping_interval,
            linger: config.server.websocket.upstream_linger,
            stale_after: config.server.websocket.upstream_stale_after,
        },
    };
    let snapshot: SharedSnapshot = Arc::new(ArcSwap::from_pointee(
        Snapshot::build(config, &shared).map_err(StartError::Setup)?,
    ));
    let bind = |what, addr| async move {
        TcpListener::bind(addr)
            .await
            .map_err(|source| StartError::Bind { what, addr, source })
    };
    let rpc = bind("listen", rpc_addr).await?;
    let admin = bind("admin_listen", admin_addr).await?;
    let local = |l: &TcpListener, what, addr| {
        l.local_addr()
            .map_err(|source| StartError::Bind { what, addr, source })
    };
    let rpc_addr = local(&rpc, "listen", rpc_addr)?;
    let admin_addr = local(&admin, "admin_listen", admin_addr)?;

    let tls = match &snapshot.load().config.server.tls {
        Some(t) => Some(tokio_rustls::TlsAcceptor::from(Arc::new(
            t.server_config()
                .map_err(|e| StartError::Setup(format!("server.tls: {e}")))?,
        ))),
        None => None,
    };
    let (stop, stopped) = watch::channel(false);
    let (max_connections, max_calls, backstop) = {
        let snap = snapshot.load();
        let server = &snap.config.server;
        (
            server.max_connections,
            server.max_concurrent_calls,
            backstop(&snap.config),
        )
    };
    let calls = Arc::new(Semaphore::new(max_calls));
    let front = FrontDoor::new(snapshot.clone(), metrics.clone(), calls.clone());
    let ws = snapshot.load().config.server.websocket.enabled.then(|| {
        Arc::new(WsHub::new(
            snapshot.clone(),
            front.answerer().clone(),
            metrics.clone(),
            stopped.clone(),
        ))
    });
    let front = Arc::new(match &ws {
        Some(hub) => front.with_websocket(hub.clone()),
        None => front,
    });
    let refused = front.clone();
    let rpc_limit = ConnectionLimit::new(
        max_connections,
        Arc::new(move || refused.count_refused_connection()),
    );
    let admin_handler = Arc::new(Admin::new(snapshot.clone(), metrics.clone()));
    let admin_service = tower::service_fn(move |req| {
        let admin = admin_handler.clone();
        async move { Ok::<_, Infallible>(admin.handle(req).await) }
    });
    metrics.sample_limits(LimitGauges {
        connections: (rpc_limit.open().clone(), max_connections),
        calls: (calls.clone(), max_calls),
        buffered_bytes: budget.permits(),
    });
    let mut tasks = vec![
        metrics.spawn_upkeep(METRICS_UPKEEP, stopped.clone()),
        // Shutdown waits for the WebSocket sessions too: upgraded, they left hyper's drain.
        tokio::spawn({
            let mut stopped = stopped.clone();
            async move {
                let Some(hub) = ws else { return };
                while !*stopped.borrow() {
                    if stopped.changed().await.is_err() {
                        break;
                    }
                }
                hub.drained(grace).await;
            }
        }),
        tokio::spawn(listener::serve(
            "rpc",
            rpc,
            tls,
            edge::rpc_service(front, calls, backstop),
            rpc_limit,
            stopped.clone(),
            grace,
        )),
        tokio::spawn(listener::serve(
            "admin",
            admin,
            None,
            admin_service,
            ConnectionLimit::new(ADMIN_MAX_CONNECTIONS, Arc::new(|| {})),
            stopped,
            grace,
        )),
    ];
    {
        let snap = snapshot.load();
        for chain in snap.router.chains() {
            tasks.extend(chain.spawn_background(&stop.subscribe()));
            let names: Vec<String> = chain
                .upstreams()
                .iter()
                .map(|u| {
                    format!(
                        "{} ({}, {})",
                        u.name(),
                        u.config.tier.as_str(),
                        u.config.display_url
                    )
                })
                .collect();
            tracing::info!(chain = %chain.name(), upstreams = %names.join(", "), "serving chain");
        }
    }
    tracing::info!(%rpc_addr, %admin_addr, "manifold listening");
    Ok(Running {
        rpc_addr,
        admin_addr,
        snapshot,
        metrics,
        stop,
        tasks,
    })
}

impl Running {
    /// Stop accepting, wait for in-flight requests (at most `shutdown_timeout`), return.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
    }
}
