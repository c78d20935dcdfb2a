//! Every default of the configuration, in one place (the README's walkthrough names them).

use std::time::Duration;

pub const LISTEN: &str = "127.0.0.1:8645";
pub const ADMIN_LISTEN: &str = "127.0.0.1:8646";
pub const MAX_REQUEST_BYTES: usize = 10 * 1024 * 1024;
pub const MAX_BATCH_LEN: usize = 1000;
pub const MAX_CONNECTIONS: u32 = 4096;
pub const MAX_CONCURRENT_CALLS: u32 = 4096;
/// 256 MiB: four answers of the largest size at once.
pub const MAX_BUFFERED_BYTES: usize = 256 * 1024 * 1024;
/// 64 MiB: a wide `eth_getLogs` or a block's receipts; more is a request to narrow.
pub const MAX_RESPONSE_BYTES: usize = 64 * 1024 * 1024;
pub const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);
/// A shared cache is worth waiting for only while it is much faster than an upstream.
pub const REDIS_TIMEOUT: Duration = Duration::from_millis(50);
pub const REDIS_TTL: Duration = Duration::from_secs(24 * 3600);
pub const REDIS_PREFIX: &str = "manifold";
/// An upstream's `max_in_flight`: as many HTTP/1.1 connections at most. Enough for a
/// node answering in 10 ms to serve 12,800 requests a second; a provider rarely allows
/// more connections from one client.
pub const MAX_IN_FLIGHT: u32 = 128;
/// The block range most providers take in one `eth_getLogs` (Alchemy's and Infura's
/// documented limits are 2K and 10K blocks).
pub const MAX_LOGS_RANGE: u32 = 2_000;
/// 100,000 blocks (two weeks of Ethereum): fifty parts at the default range.
pub const MAX_LOGS_BLOCKS: u32 = 100_000;
pub const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(10);
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
pub const HEAVY_REQUEST_TIMEOUT: Duration = Duration::from_secs(120);
pub const MAX_ATTEMPTS: u32 = 3;
pub const RETRY_BUDGET: f32 = 0.2;
pub const MAX_LAG_BLOCKS: u64 = 3;
pub const BROADCAST_FANOUT: u32 = 3;
/// A few Ethereum block times.
pub const REBROADCAST_AFTER: Duration = Duration::from_secs(36);
pub const WATCH_FOR: Duration = Duration::from_secs(3600);
/// Two epochs: Ethereum finality.
pub const FINALITY_DEPTH: u64 = 64;
pub const MAX_WATCHED: usize = 10_000;
/// 64 MiB of answers that cannot change (finalized blocks, receipts, logs).
pub const CACHE_MAX_BYTES: usize = 64 * 1024 * 1024;
/// The share of the cache one answer may take at most: a hundredth.
pub const CACHE_ENTRY_SHARE: usize = 100;
pub const TX_STORE: &str = "manifold-tx.redb";
pub const HEALTH_INTERVAL: Duration = Duration::from_secs(5);
pub const HEALTH_TIMEOUT: Duration = Duration::from_secs(3);
pub const HEALTH_RISE: u32 = 2;
pub const HEALTH_FALL: u32 = 2;
/// WebSocket client sockets open at once.
pub const WS_MAX_CONNECTIONS: usize = 4096;
/// Subscriptions per socket: geth has no limit; the design's 128.
pub const WS_MAX_SUBSCRIPTIONS: usize = 128;
/// Calls in flight per socket, as proxyd allows.
pub const WS_MAX_IN_FLIGHT: usize = 100;
/// Notifications queued for one slow client: geth closes at 10,000; a new head a second
/// fills 4,096 in over an hour.
pub const WS_QUEUE_MESSAGES: usize = 4096;
pub const WS_QUEUE_BYTES: usize = 16 * 1024 * 1024;
pub const WS_PING_INTERVAL: Duration = Duration::from_secs(30);
/// An upstream socket stays open this long after its last subscriber (or filter) left: a
/// client that reconnects at once finds it open.
pub const WS_UPSTREAM_LINGER: Duration = Duration::from_secs(60);
/// An upstream socket whose heads trail its own polled head for this long is opened again
/// (open, answering pings, but no longer delivering).
pub const WS_UPSTREAM_STALE_AFTER: Duration = Duration::from_secs(30);
/// Filters a chain holds: each is a few kilobytes between polls.
pub const FILTERS_MAX: usize = 10_000;
/// geth's filter timeout.
pub const FILTERS_EXPIRE_AFTER: Duration = Duration::from_secs(300);
/// geth holds changes without a limit; a filter polled every few seconds holds a few.
pub const FILTERS_MAX_CHANGES: usize = 10_000;
