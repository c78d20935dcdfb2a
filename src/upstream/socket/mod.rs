//! Upstream sockets (`ws_url`): one WebSocket per upstream, open while some client needs
//! the chain's newest blocks (a subscription or a filter), closed `upstream_linger` after
//! the last one left. Through it the node pushes its heads (and, while a client wants
//! them, its pending transactions), so that Manifold hears of a block when the node does,
//! not at its next probe.
//!
//! A socket only speeds the chain's view up; it never is the view. The heads it tells are
//! one more reading of the upstream's head, counted like a probe's (`ActiveHealth`), and
//! the chain head, new heads and logs are made from them as from probes
//! (`chain::follow`). So when a socket dies, freezes or goes stale, subscribers notice
//! nothing: the other sockets and the probes go on, and this one is opened again with a
//! backoff.
//!
//! Written by hand over tokio-tungstenite: which subscriptions to hold, when to reconnect
//! and what a head means is the product's own core.

mod connect;
mod session;
mod stale;
mod status;

use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

pub use connect::{ConnectError, SocketTarget};
pub use session::{SocketHooks, Timing, Wants};
pub use status::{CloseReason, SocketState, SocketStatus};

use super::Upstream;
use crate::family::PushProtocol;

/// How often a closed socket looks for a client that needs it.
const DEMAND_TICK: Duration = Duration::from_millis(200);
/// A URL that refused the upgrade (or a node that refused the subscription) is tried again
/// after this long: a provider may turn WebSocket on, a node may be restarted with it.
const UNSUPPORTED_RETRY: Duration = Duration::from_secs(600);
/// Backoff between failed openings: from the first to the longest, doubling.
const BACKOFF_FIRST: Duration = Duration::from_millis(500);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// A socket that stayed open this long starts its next backoff from the first step.
const STEADY: Duration = Duration::from_secs(60);

/// Keep `upstream`'s socket open while `hooks` says a client needs it, until `stop`.
pub async fn keep(
    upstream: &Upstream,
    push: &dyn PushProtocol,
    hooks: &dyn SocketHooks,
    timing: Timing,
    mut stop: watch::Receiver<bool>,
) {
    let (Some(target), status) = (upstream.client().socket(), upstream.socket_status()) else {
        return;
    };
    let derived = upstream.config.ws.as_ref().is_some_and(|w| w.derived);
    let mut backoff = BACKOFF_FIRST;
    let mut told_unsupported = false;
    loop {
        if status.state() != SocketState::Unsupported {
            status.set_state(SocketState::Idle);
        }
        while !hooks.wants().any {
            if !pause(DEMAND_TICK, &mut stop).await {
                return;
            }
        }
        status.set_state(SocketState::Connecting);
        let opened = tokio::select! {
            r = target.connect() => r,
            _ = stop.changed() => return,
        };
        let wait = match opened {
            Err(ConnectError::Refused(code)) => {
                status.set_state(SocketState::Unsupported);
                status.failed(format!(
                    "the upgrade was answered HTTP {code}: no WebSocket at this URL"
                ));
                if !told_unsupported {
                    told_unsupported = true;
                    if derived {
                        tracing::info!(upstream = %upstream.name(), status = %code, "no WebSocket at the upstream's URL (ws_url derived from url): its heads come from probes only; set ws_url, or ws_url = false to stop trying");
                    } else {
                        tracing::warn!(upstream = %upstream.name(), status = %code, "the upstream refused the WebSocket upgrade at ws_url: its heads come from probes only");
                    }
                }
                UNSUPPORTED_RETRY
            }
            Err(ConnectError::Failed(why)) => {
                status.set_state(SocketState::Down);
                status.failed(upstream.scrub(&why));
                next_backoff(&mut backoff)
            }
            Ok(socket) => {
                status.set_state(SocketState::Open);
                tracing::debug!(upstream = %upstream.name(), "upstream socket open");
                let opened_at = Instant::now();
                let session = session::Session {
                    push,
                    hooks,
                    status,
                    timing,
                };
                let (reason, why) = session.run(socket, &mut stop).await;
                upstream.active().set_socket_head(None);
                let why = upstream.scrub(&why);
                match reason {
                    CloseReason::Stopped => {
                        status.closed(reason, why);
                        return;
                    }
                    CloseReason::Idle => {
                        status.closed(reason, String::new());
                        backoff = BACKOFF_FIRST;
                        continue;
                    }
                    CloseReason::Refused => {
                        tracing::warn!(upstream = %upstream.name(), reason = %why, "upstream socket refused: its heads come from probes only");
                        status.closed(reason, why);
                        status.set_state(SocketState::Unsupported);
                        UNSUPPORTED_RETRY
                    }
                    _ => {
                        tracing::info!(upstream = %upstream.name(), reason = reason.label(), detail = %why, "upstream socket closed; opening it again");
                        status.closed(reason, why);
                        status.set_state(SocketState::Down);
                        if opened_at.elapsed() >= STEADY {
                            backoff = BACKOFF_FIRST;
                        }
                        next_backoff(&mut backoff)
                    }
                }
            }
        };
        if !pause(wait, &mut stop).await {
            return;
        }
    }
}

/// The wait before the next opening (± 20%), and double the next one.
fn next_backoff(backoff: &mut Duration) -> Duration {
    let wait = backoff.mul_f64(0.8 + 0.4 * fastrand::f64());
    *backoff = (*backoff * 2).min(BACKOFF_MAX);
    wait
}

/// Sleep `d`; `false` when `stop` came first.
async fn pause(d: Duration, stop: &mut watch::Receiver<bool>) -> bool {
    tokio::select! {
        () = tokio::time::sleep(d) => !*stop.borrow(),
        changed = stop.changed() => changed.is_ok() && !*stop.borrow(),
    }
}
