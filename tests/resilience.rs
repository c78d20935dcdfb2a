//! The resilience mechanisms end to end, against scriptable fake upstreams: circuit breakers,
//! the retry budget, hedging, `max_rps` and the timeouts of slow-by-nature calls.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::*;

const CALL: &str = r#"{"jsonrpc":"2.0","id":7,"method":"eth_blockNumber"}"#;

async fn breaker_state(proxy: &manifold::server::Running, upstream: &str) -> String {
    let (_, body) = HttpClient::new().get(&admin_url(proxy, "/status")).await;
    let status: Value = serde_json::from_str(&body).unwrap();
    upstream_status(&status, upstream)["breaker"]["state"]
        .as_str()
        .unwrap()
        .to_string()
}

#[tokio::test]
async fn breaker_opens_on_failures_stops_traffic_then_closes_after_a_good_trial() {
    let failing = Arc::new(AtomicBool::new(true));
    let f = failing.clone();
    let u0 = FakeUpstream::start(move |_, _| {
        if f.load(Ordering::SeqCst) {
            Action::Status(503, "down for maintenance".into())
        } else {
            Action::Result("\"0xa\"".into())
        }
    })
    .await;
    let u1 = FakeUpstream::ok("\"0xb\"").await;
    let policy = "breaker = { consecutive_failures = 3, open_duration = \"1s\", \
                  half_open_requests = 1 }\nhedge = { delay = \"off\" }";
    let proxy = start_proxy(&chain_config(&[&u0.url, &u1.url], policy)).await;
    let url = rpc_url(&proxy, "/eth");
    let c = HttpClient::new();
    // The primary fails: each call is retried on u1 and the client sees no error.
    for _ in 0..3 {
        assert_eq!(c.rpc(&url, CALL).await["result"], "0xb");
    }
    assert_eq!(u0.hits(), 3);
    assert_eq!(breaker_state(&proxy, "u0").await, "open");
    let gauge = r#"manifold_breaker_state{chain="eth",upstream="u0"}"#;
    assert_eq!(metric(&proxy, gauge).await, 2.0);
    // Open: no request goes to it.
    for _ in 0..5 {
        assert_eq!(c.rpc(&url, CALL).await["result"], "0xb");
    }
    assert_eq!(u0.hits(), 3, "an open breaker lets nothing through");

    // It recovers; once the open time (1 s +-20%) is over, one trial request reaches it,
    // succeeds, and the breaker closes.
    failing.store(false, Ordering::SeqCst);
    let started = Instant::now();
    loop {
        let v = c.rpc(&url, CALL).await;
        if v["result"] == "0xa" {
            break;
        }
        assert_eq!(v["result"], "0xb", "{v}");
        assert!(started.elapsed() < Duration::from_secs(10), "no trial");
        let wake = u0.next_request();
        let _ = tokio::time::timeout(Duration::from_millis(50), wake).await;
    }
    assert_eq!(breaker_state(&proxy, "u0").await, "closed");
    assert_eq!(metric(&proxy, gauge).await, 0.0);
    // Closed: the primary serves again.
    assert_eq!(c.rpc(&url, CALL).await["result"], "0xa");
}

/// When every upstream that could serve has its breaker open (one upstream here; a blip of
/// the proxy's own network does it to all), a call still gets one attempt past a breaker
/// rather than none: the breaker sheds load onto others, and there are none. `/readyz`
/// says the chain is not ready, and the breaker stays open on its own time.
#[tokio::test]
async fn every_breaker_open_still_tries_one_and_is_not_ready() {
    let up = Arc::new(AtomicBool::new(false));
    let u = up.clone();
    let u0 = FakeUpstream::start(move |_, _| {
        if u.load(Ordering::SeqCst) {
            Action::Result("\"0xa\"".into())
        } else {
            Action::Status(502, "bad gateway".into())
        }
    })
    .await;
    let policy = "breaker = { consecutive_failures = 2, open_duration = \"1m\" }";
    let proxy = start_proxy(&chain_config(&[&u0.url], policy)).await;
    let url = rpc_url(&proxy, "/eth");
    let c = HttpClient::new();
    for _ in 0..2 {
        assert_eq!(c.rpc(&url, CALL).await["error"]["code"], -32092);
    }
    assert_eq!(breaker_state(&proxy, "u0").await, "open");
    let (status, body) = c.get(&admin_url(&proxy, "/readyz")).await;
    assert_eq!(status, 503, "{body}");
    // Back: the next call is served through the open breaker.
    up.store(true, Ordering::SeqCst);
    assert_eq!(c.rpc(&url, CALL).await["result"], "0xa");
    assert_eq!(u0.hits(), 3);
    assert_eq!(breaker_state(&proxy, "u0").await, "open", "its own time");
}

#[tokio::test]
async fn the_retry_budget_stops_retries_when_spent() {
    // Every upstream fails, and the breakers never open: only the budget limits retries.
    // With `budget = 0` only the floor is left: 10 retries a second over 10 s, 100.
    let ups = [
        FakeUpstream::start(|_, _| Action::Status(503, "a".into())).await,
        FakeUpstream::start(|_, _| Action::Status(503, "b".into())).await,
        FakeUpstream::start(|_, _| Action::Status(503, "c".into())).await,
    ];
    let urls: Vec<&str> = ups.iter().map(|u| u.url.as_str()).collect();
    let policy = "retry = { max_attempts = 3, budget = 0.0 }\n\
                  breaker = { consecutive_failures = 10000, failure_rate = 1.0, window = 10000 }";
    let proxy = start_proxy(&chain_config(&urls, policy)).await;
    let url = rpc_url(&proxy, "/eth");
    let c = HttpClient::new();
    let calls = 80;
    for _ in 0..calls {
        assert_eq!(c.rpc(&url, CALL).await["error"]["code"], -32092);
    }
    let hits: usize = ups.iter().map(FakeUpstream::hits).sum();
    let sent = metric(
        &proxy,
        r#"manifold_retries_total{chain="eth",result="sent"}"#,
    )
    .await;
    let denied = metric(
        &proxy,
        r#"manifold_retries_total{chain="eth",result="budget_exhausted"}"#,
    )
    .await;
    // Two retries wanted per call (160); the floor gives 100 in 10 s, then each call stops
    // at its first refused retry.
    assert_eq!(
        hits,
        calls + sent as usize,
        "every sent retry reached an upstream"
    );
    assert!(sent >= 100.0, "the floor allows 100 in 10 s: sent {sent}");
    assert!(sent < 2.0 * calls as f64, "the budget ran out: sent {sent}");
    assert!(
        denied >= 1.0 && sent + denied <= 2.0 * calls as f64,
        "denied {denied}"
    );
}

#[tokio::test]
async fn a_slow_attempt_is_hedged_and_the_loser_cancelled() {
    let u0 = FakeUpstream::start(|_, _| {
        Action::Delay(
            Duration::from_secs(10),
            Box::new(Action::Result("\"0xslow\"".into())),
        )
    })
    .await;
    let u1 = FakeUpstream::ok("\"0xfast\"").await;
    let proxy = start_proxy(&chain_config(
        &[&u0.url, &u1.url],
        "hedge = { delay = \"100ms\" }",
    ))
    .await;
    let v = HttpClient::new().rpc(&rpc_url(&proxy, "/eth"), CALL).await;
    assert_eq!(v["result"], "0xfast", "{v}");
    assert_eq!((u0.hits(), u1.hits()), (1, 1));
    // The first attempt is dropped, and with it its connection: u0 sees the cancellation.
    u0.wait_cancelled(1).await;
    let sent = metric(
        &proxy,
        r#"manifold_hedges_total{chain="eth",result="sent"}"#,
    )
    .await;
    let won = metric(&proxy, r#"manifold_hedges_total{chain="eth",result="won"}"#).await;
    assert_eq!((sent, won), (1.0, 1.0));
}

#[tokio::test]
async fn a_hedge_with_nowhere_to_go_yet_is_tried_again_after_another_delay() {
    // u0 hangs; u1, the only other, takes one request a second.
    let u0 = FakeUpstream::start(|_, _| {
        Action::Delay(
            Duration::from_secs(30),
            Box::new(Action::Result("\"0xslow\"".into())),
        )
    })
    .await;
    let u1 = FakeUpstream::ok("\"0xfast\"").await;
    let toml = chain_config(
        &[&u0.url, &u1.url],
        "request_timeout = \"20s\"\nhedge = { delay = \"20ms\" }",
    )
    .replacen("name = \"u1\"\n", "name = \"u1\"\nmax_rps = 1\n", 1)
    .replacen(
        "tier = \"primary\"\ntimeout = \"2s\"",
        "tier = \"primary\"\ntimeout = \"15s\"",
        1,
    );
    let proxy = start_proxy(&toml).await;
    let c = HttpClient::new();
    // The first call's hedge takes u1's room for this second; the second call's hedge finds
    // none, and goes once u1 has room again (about a second later), long before u0's
    // timeout.
    for _ in 0..2 {
        assert_eq!(
            c.rpc(&rpc_url(&proxy, "/eth"), CALL).await["result"],
            "0xfast"
        );
    }
    let hedges = metric(
        &proxy,
        r#"manifold_hedges_total{chain="eth",result="sent"}"#,
    )
    .await;
    let retries = metric(
        &proxy,
        r#"manifold_retries_total{chain="eth",result="sent"}"#,
    )
    .await;
    assert_eq!(
        (hedges, retries),
        (2.0, 0.0),
        "both answers came from hedges"
    );
    u0.wait_cancelled(2).await;
    let cancelled = metric(
        &proxy,
        r#"manifold_upstream_requests_total{chain="eth",upstream="u0",outcome="cancelled"}"#,
    )
    .await;
    assert_eq!(cancelled, 2.0);
}

#[tokio::test]
async fn max_in_flight_queues_attempts_beyond_it_and_never_probes() {
    let u0 = FakeUpstream::start(|_, _| {
        Action::Delay(
            Duration::from_secs(1),
            Box::new(Action::Result("\"0x1\"".into())),
        )
    })
    .await;
    let toml = chain_config_with_health(
        &[&u0.url],
        "hedge = { delay = \"off\" }",
        "interval = \"200ms\"\ntimeout = \"200ms\"",
    )
    .replacen("name = \"u0\"\n", "name = \"u0\"\nmax_in_flight = 2\n", 1)
    // The wait for a slot counts in the attempt's timeout.
    .replacen("timeout = \"2s\"", "timeout = \"10s\"", 1);
    let proxy = start_proxy(&toml).await;
    let url = rpc_url(&proxy, "/eth");
    // Six different calls (identical ones would share one upstream call).
    let calls: Vec<_> = (0..6)
        .map(|i| {
            let url = url.clone();
            let call = format!(
                r#"{{"jsonrpc":"2.0","id":7,"method":"eth_getBalance","params":["0x{i}","latest"]}}"#
            );
            tokio::spawn(async move { HttpClient::new().rpc(&url, &call).await })
        })
        .collect();
    // While both slots are taken, probes still get through and find the node healthy.
    u0.next_request().await;
    let rounds = u0.probes.rounds.load(Ordering::SeqCst);
    while u0.probes.rounds.load(Ordering::SeqCst) < rounds + 2 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Two probe rounds answered while calls still waited for a slot (a probe in the queue
    // would have timed out unsent).
    assert!(u0.hits() < 6, "probes waited for the queue");
    for c in calls {
        assert_eq!(c.await.unwrap()["result"], "0x1");
    }
    assert_eq!(u0.hits(), 6);
    assert_eq!(u0.peak_busy(), 2, "two at a time, the rest queued");
    assert_eq!(breaker_state(&proxy, "u0").await, "closed");
}

#[tokio::test]
async fn an_attempt_queued_past_its_timeout_moves_on_and_blames_no_one() {
    let u0 = FakeUpstream::start(|_, _| {
        Action::Delay(
            Duration::from_secs(5),
            Box::new(Action::Result("\"0xa\"".into())),
        )
    })
    .await;
    let u1 = FakeUpstream::ok("\"0xb\"").await;
    let toml = chain_config(
        &[&u0.url, &u1.url],
        "hedge = { delay = \"off\" }\nheavy_request_timeout = \"10s\"",
    )
    .replacen("name = \"u0\"\n", "name = \"u0\"\nmax_in_flight = 1\n", 1)
    .replacen("timeout = \"2s\"", "timeout = \"500ms\"", 1);
    let proxy = start_proxy(&toml).await;
    let url = rpc_url(&proxy, "/eth");
    // A slow log query takes u0's one slot for seconds.
    let logs = r#"{"jsonrpc":"2.0","id":1,"method":"eth_getLogs","params":[{"fromBlock":"0x1","toBlock":"0x2"}]}"#;
    let heavy = {
        let url = url.clone();
        tokio::spawn(async move { HttpClient::new().rpc(&url, logs).await })
    };
    u0.next_request().await;
    // u0 (primary) is picked for the next call too: it waits for the slot, and moves to u1
    // when u0's timeout runs out, unsent.
    let v = HttpClient::new().rpc(&url, CALL).await;
    assert_eq!(v["result"], "0xb", "{v}");
    assert_eq!(u0.hits(), 1, "the queued attempt was never sent");
    let timeouts = metric(
        &proxy,
        r#"manifold_upstream_requests_total{chain="eth",upstream="u0",outcome="timeout"}"#,
    )
    .await;
    assert_eq!(timeouts, 1.0);
    // Not held against u0: nothing was sent.
    let (_, body) = HttpClient::new().get(&admin_url(&proxy, "/status")).await;
    let status: Value = serde_json::from_str(&body).unwrap();
    let u0_status = upstream_status(&status, "u0");
    assert_eq!(u0_status["consecutive_failures"], 0, "{u0_status}");
    assert_eq!(u0_status["error_rate"], 0.0, "{u0_status}");
    heavy.abort();
}

#[tokio::test]
async fn heavy_calls_take_at_most_half_the_slots() {
    let u0 = FakeUpstream::start(|req, _| {
        if req["method"] == "eth_getLogs" {
            Action::Delay(
                Duration::from_secs(5),
                Box::new(Action::Result("[]".into())),
            )
        } else {
            Action::Result("\"0x1\"".into())
        }
    })
    .await;
    let toml = chain_config(&[&u0.url], "hedge = { delay = \"off\" }").replacen(
        "name = \"u0\"\n",
        "name = \"u0\"\nmax_in_flight = 2\n",
        1,
    );
    let proxy = start_proxy(&toml).await;
    let url = rpc_url(&proxy, "/eth");
    // Two different scans (identical ones would share one upstream call).
    let logs = |to: u8| {
        format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"eth_getLogs","params":[{{"fromBlock":"0x1","toBlock":"{to:#x}"}}]}}"#
        )
    };
    let first = {
        let url = url.clone();
        tokio::spawn(async move { HttpClient::new().rpc(&url, &logs(2)).await })
    };
    u0.next_request().await;
    // A second log scan waits for the heavy share (one of the two slots)...
    let second = {
        let url = url.clone();
        tokio::spawn(async move { HttpClient::new().rpc(&url, &logs(3)).await })
    };
    wait_for_status(&proxy, "the second log scan queued", |v| {
        upstream_status(v, "u0")["in_flight"] == 2
    })
    .await;
    // ...while an ordinary call takes the other slot at once.
    let v = HttpClient::new().rpc(&url, CALL).await;
    assert_eq!(v["result"], "0x1", "{v}");
    assert_eq!(u0.hits(), 2, "the second log scan is still queued");
    first.abort();
    second.abort();
}

#[tokio::test]
async fn a_fast_null_does_not_beat_a_real_answer_in_flight() {
    let receipt = r#"{"transactionHash":"0x01","status":"0x1"}"#;
    // Slower than the hedge delay, within the null's hold (250 ms).
    let u0 = FakeUpstream::start(move |_, _| {
        Action::Delay(
            Duration::from_millis(150),
            Box::new(Action::Result(receipt.into())),
        )
    })
    .await;
    // Not seen the transaction yet.
    let u1 = FakeUpstream::ok("null").await;
    let proxy = start_proxy(&chain_config(
        &[&u0.url, &u1.url],
        "hedge = { delay = \"50ms\" }",
    ))
    .await;
    let call = r#"{"jsonrpc":"2.0","id":1,"method":"eth_getTransactionReceipt","params":["0x01"]}"#;
    let v = HttpClient::new().rpc(&rpc_url(&proxy, "/eth"), call).await;
    assert_eq!(v["result"]["status"], "0x1", "{v}");
    assert_eq!(u1.hits(), 1, "the hedge was sent");
}

/// The other attempt is stuck: the held `null` is the answer after its hold (250 ms), not
/// after the stuck attempt's timeout (2 s here), and the stuck attempt is cancelled.
#[tokio::test]
async fn a_null_does_not_wait_for_a_stuck_attempt() {
    let stuck = FakeUpstream::start(|_, _| Action::Hang).await;
    let not_yet = FakeUpstream::ok("null").await;
    let proxy = start_proxy(&chain_config(
        &[&stuck.url, &not_yet.url],
        "hedge = { delay = \"50ms\" }",
    ))
    .await;
    let call = r#"{"jsonrpc":"2.0","id":1,"method":"eth_getTransactionReceipt","params":["0x01"]}"#;
    let started = tokio::time::Instant::now();
    let v = HttpClient::new().rpc(&rpc_url(&proxy, "/eth"), call).await;
    let took = started.elapsed();
    assert!(v["result"].is_null(), "{v}");
    assert!(
        took < Duration::from_millis(1500),
        "the null waited {took:?}, as if for the stuck attempt's 2 s timeout"
    );
    stuck.wait_cancelled(1).await;
}

#[tokio::test]
async fn the_hedge_budget_and_max_extra_bound_extra_load() {
    let slow = || {
        Action::Delay(
            Duration::from_millis(300),
            Box::new(Action::Result("\"0x1\"".into())),
        )
    };
    let ups = [
        FakeUpstream::start(move |_, _| slow()).await,
        FakeUpstream::start(move |_, _| slow()).await,
        FakeUpstream::start(move |_, _| slow()).await,
    ];
    let urls: Vec<&str> = ups.iter().map(|u| u.url.as_str()).collect();
    // max_extra = 1: three slow upstreams, yet each call sends at most one hedge.
    let proxy = start_proxy(&chain_config(
        &urls,
        "hedge = { delay = \"20ms\", max_extra = 1 }",
    ))
    .await;
    let c = HttpClient::new();
    for _ in 0..3 {
        assert_eq!(c.rpc(&rpc_url(&proxy, "/eth"), CALL).await["result"], "0x1");
    }
    let hits: usize = ups.iter().map(FakeUpstream::hits).sum();
    assert_eq!(hits, 6, "one first attempt and one hedge per call");
}

#[tokio::test]
async fn a_revert_is_returned_once_and_never_retried() {
    let revert = r#"{"code":3,"message":"execution reverted: not owner","data":"0x08c379a0"}"#;
    let u0 = FakeUpstream::start(move |_, _| Action::Error(revert.into())).await;
    let u1 = FakeUpstream::ok("\"0x\"").await;
    let proxy = start_proxy(&chain_config(&[&u0.url, &u1.url], "")).await;
    let call = r#"{"jsonrpc":"2.0","id":1,"method":"eth_call","params":[{"to":"0x01"},"latest"]}"#;
    let v = HttpClient::new().rpc(&rpc_url(&proxy, "/eth"), call).await;
    assert_eq!(
        v["error"]["message"], "execution reverted: not owner",
        "{v}"
    );
    assert_eq!(v["error"]["data"], "0x08c379a0");
    assert_eq!((u0.hits(), u1.hits()), (1, 0));
}

#[tokio::test]
async fn max_rps_sends_the_excess_elsewhere() {
    let u0 = FakeUpstream::ok("\"0xa\"").await;
    let u1 = FakeUpstream::ok("\"0xb\"").await;
    let toml = chain_config(&[&u0.url, &u1.url], "hedge = { delay = \"off\" }").replacen(
        "name = \"u0\"\n",
        "name = \"u0\"\nmax_rps = 2\n",
        1,
    );
    let proxy = start_proxy(&toml).await;
    let c = HttpClient::new();
    let started = Instant::now();
    for _ in 0..20 {
        assert!(c.rpc(&rpc_url(&proxy, "/eth"), CALL).await["result"].is_string());
    }
    // A burst of 2, then 2 a second.
    let allowed = 2 + 2 * started.elapsed().as_secs_f64().ceil() as usize;
    assert!(u0.hits() <= allowed, "u0 got {} > {allowed}", u0.hits());
    assert!(u0.hits() >= 1);
    assert_eq!(u0.hits() + u1.hits(), 20);
}

#[tokio::test]
async fn max_rps_with_no_other_upstream_waits_for_room() {
    let u0 = FakeUpstream::ok("\"0xa\"").await;
    let toml =
        chain_config(&[&u0.url], "").replacen("name = \"u0\"\n", "name = \"u0\"\nmax_rps = 5\n", 1);
    let proxy = start_proxy(&toml).await;
    let c = HttpClient::new();
    let started = Instant::now();
    for _ in 0..8 {
        assert_eq!(c.rpc(&rpc_url(&proxy, "/eth"), CALL).await["result"], "0xa");
    }
    // 5 at once, then one every 200 ms: the last three waited.
    assert!(
        started.elapsed() >= Duration::from_millis(500),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn slow_by_nature_calls_get_the_heavy_timeout() {
    // Every answer takes 1.5 s; the upstream's own timeout is 1 s.
    let u0 = FakeUpstream::start(|req, _| {
        Action::Delay(
            Duration::from_millis(1500),
            Box::new(Action::Result(format!(
                "\"{}\"",
                req["method"].as_str().unwrap()
            ))),
        )
    })
    .await;
    let u1 = FakeUpstream::ok("\"u1\"").await;
    let toml = chain_config(
        &[&u0.url, &u1.url],
        "heavy_request_timeout = \"10s\"\nhedge = { delay = \"off\" }",
    )
    .replace("timeout = \"2s\"\n", "timeout = \"1s\"\n");
    let proxy = start_proxy(&toml).await;
    let c = HttpClient::new();
    let url = rpc_url(&proxy, "/eth");
    // eth_getLogs is heavy: the upstream's 1 s does not apply, the 10 s does.
    let logs = r#"{"jsonrpc":"2.0","id":1,"method":"eth_getLogs","params":[{"fromBlock":"0x1","toBlock":"0x2"}]}"#;
    assert_eq!(c.rpc(&url, logs).await["result"], "eth_getLogs");
    // An ordinary call times out on u0 after 1 s and fails over.
    assert_eq!(c.rpc(&url, CALL).await["result"], "u1");
    let (_, body) = c.get(&admin_url(&proxy, "/status")).await;
    let status: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        upstream_status(&status, "u0")["consecutive_failures"],
        1,
        "only the ordinary call's timeout counts"
    );
}

/// A heavy call runs as long as `heavy_request_timeout` allows, and its timeout blames no
/// one; but when its upstream is found dead meanwhile (here by failed probes), the call
/// moves to another upstream at once instead of waiting out its deadline.
#[tokio::test]
async fn a_heavy_call_leaves_an_upstream_taken_out_while_it_ran() {
    let u0 = FakeUpstream::start(|_, _| Action::Hang).await;
    let u1 = FakeUpstream::ok("\"u1\"").await;
    let toml = chain_config_with_health(
        &[&u0.url, &u1.url],
        "heavy_request_timeout = \"60s\"\nhedge = { delay = \"off\" }",
        "interval = \"100ms\"\ntimeout = \"100ms\"\nrise = 1\nfall = 1",
    );
    let proxy = start_proxy(&toml).await;
    let url = rpc_url(&proxy, "/eth");
    let logs = r#"{"jsonrpc":"2.0","id":1,"method":"eth_getLogs","params":[{"fromBlock":"0x1","toBlock":"0x2"}]}"#;
    let sent = u0.next_request();
    let call = tokio::spawn(async move { HttpClient::new().rpc(&url, logs).await });
    sent.await;
    // The primary hangs on it; then its probes start failing.
    u0.probes.failing.store(true, Ordering::SeqCst);
    let v = tokio::time::timeout(Duration::from_secs(20), call)
        .await
        .expect("the call moved on before its 60 s deadline")
        .unwrap();
    assert_eq!(v["result"], "u1", "{v}");
    u0.wait_cancelled(1).await;
    assert_eq!(u1.hits(), 1);
}

/// An open breaker whose time is over shows as half-open in `/status` and the gauge even
/// when no call has reached it since: the health checker moves it along.
#[tokio::test]
async fn an_open_breaker_turns_half_open_on_time_without_traffic() {
    let u0 = FakeUpstream::start(|_, _| Action::Status(503, "down".into())).await;
    let u1 = FakeUpstream::ok("\"0xb\"").await;
    let policy = "breaker = { consecutive_failures = 2, open_duration = \"500ms\" }\n\
                  hedge = { delay = \"off\" }";
    let toml = chain_config_with_health(
        &[&u0.url, &u1.url],
        policy,
        "interval = \"100ms\"\ntimeout = \"100ms\"",
    );
    let proxy = start_proxy(&toml).await;
    let (url, c) = (rpc_url(&proxy, "/eth"), HttpClient::new());
    for _ in 0..2 {
        assert_eq!(c.rpc(&url, CALL).await["result"], "0xb");
    }
    assert_eq!(breaker_state(&proxy, "u0").await, "open");
    wait_for_status(&proxy, "u0's breaker half-open", |s| {
        upstream_status(s, "u0")["breaker"]["state"] == "half_open"
    })
    .await;
    let gauge = r#"manifold_breaker_state{chain="eth",upstream="u0"}"#;
    assert_eq!(metric(&proxy, gauge).await, 1.0);
    assert_eq!(u0.hits(), 2, "no traffic reached it meanwhile");
}

/// A retry that has to wait for an upstream's `max_rps` room does not hold up the call's
/// other attempts: a hedge answering meanwhile ends the call, and the waiting retry is
/// never sent.
#[tokio::test]
async fn a_retry_waiting_for_room_does_not_hold_up_an_answer() {
    let u0 = FakeUpstream::start(|_, _| {
        Action::Delay(
            Duration::from_millis(50),
            Box::new(Action::Status(503, "down".into())),
        )
    })
    .await;
    let u1 = FakeUpstream::ok("\"u1\"").await;
    let u2 = FakeUpstream::start(|_, _| {
        Action::Delay(
            Duration::from_millis(300),
            Box::new(Action::Result("\"u2\"".into())),
        )
    })
    .await;
    let toml = chain_config(
        &[&u0.url, &u1.url, &u2.url],
        "hedge = { delay = \"20ms\", max_extra = 1 }\nbreaker = { consecutive_failures = 100 }",
    )
    .replacen(
        &format!("url = \"{}\"\n", u1.url),
        &format!("url = \"{}\"\nmax_rps = 1\n", u1.url),
        1,
    )
    .replacen(
        "[chains.policy]\n",
        "[chains.policy]\ncache = { enabled = false }\n",
        1,
    );
    // No follower either (no cache, no subscriptions): its first block would take u1's
    // one request of this second.
    let proxy = start_proxy(&format!("{toml}\n[server.websocket]\nenabled = false\n")).await;
    let (url, c) = (rpc_url(&proxy, "/eth"), HttpClient::new());
    // The primary is slow to fail: the hedge goes to u1, which answers and spends its one
    // request of this second.
    assert_eq!(c.rpc(&url, CALL).await["result"], "u1");
    assert_eq!(u1.hits(), 1);
    // Now the hedge goes to u2 (u1 has no room), the primary fails, and the retry can only
    // go to u1 in about a second; u2 answers long before.
    assert_eq!(c.rpc(&url, CALL).await["result"], "u2");
    assert_eq!(u0.hits(), 2);
    assert_eq!(u1.hits(), 1);
    let retries = r#"manifold_retries_total{chain="eth",result="sent"}"#;
    assert_eq!(
        metric(&proxy, retries).await,
        0.0,
        "the retry still waiting for room was never sent"
    );
}

/// A batch has the chain's request_timeout as a whole: 80 calls of 400 ms each, 16 at a
/// time, would take 2 s; at 600 ms the batch is answered, the calls not done by then with
/// -32093.
#[tokio::test]
async fn a_batch_has_a_deadline() {
    let slow = FakeUpstream::start(|_, _| {
        Action::Delay(
            Duration::from_millis(400),
            Box::new(Action::Result("\"0x1\"".into())),
        )
    })
    .await;
    let proxy = start_proxy(&chain_config(
        &[&slow.url],
        "request_timeout = \"600ms\"\nhedge = { delay = \"off\" }",
    ))
    .await;
    let items: Vec<String> = (0..80)
        .map(|i| {
            format!(r#"{{"jsonrpc":"2.0","id":{i},"method":"eth_getBalance","params":["0x01"]}}"#)
        })
        .collect();
    let started = tokio::time::Instant::now();
    let (status, text) = HttpClient::new()
        .post(&rpc_url(&proxy, "/eth"), format!("[{}]", items.join(",")))
        .await;
    let took = started.elapsed();
    assert_eq!(status, 200);
    let answers: Vec<serde_json::Value> = serde_json::from_str(&text).unwrap();
    assert_eq!(answers.len(), 80, "every item answered");
    let answered = answers.iter().filter(|a| a["result"] == "0x1").count();
    let timed_out: Vec<&serde_json::Value> = answers
        .iter()
        .filter(|a| a["error"]["code"] == -32093)
        .collect();
    assert!(answered >= 1 && !timed_out.is_empty(), "{text}");
    assert_eq!(answered + timed_out.len(), 80, "{text}");
    assert_eq!(timed_out[0]["error"]["data"]["reason"], "request_timeout");
    assert!(
        took < Duration::from_millis(1500),
        "the batch took {took:?}"
    );
}

/// Right after start, before the first upstream has answered 20 calls, the auto hedge delay
/// comes from its probes' round trips (milliseconds here), not the 2 s upper bound: a read
/// behind a hung upstream is answered by the next one at once.
#[tokio::test]
async fn the_auto_hedge_delay_starts_from_the_probes() {
    let hung = FakeUpstream::start(|_, _| Action::Hang).await;
    let good = FakeUpstream::ok(r#""0x1""#).await;
    let proxy = start_proxy(&chain_config(
        &[&hung.url, &good.url],
        "hedge = { delay = \"auto\" }",
    ))
    .await;
    wait_for_status(&proxy, "both probed", |s| {
        ["u0", "u1"]
            .iter()
            .all(|u| upstream_status(s, u)["status"] == "healthy")
    })
    .await;
    let started = tokio::time::Instant::now();
    let v = HttpClient::new()
        .rpc(
            &rpc_url(&proxy, "/eth"),
            r#"{"jsonrpc":"2.0","id":1,"method":"eth_getBalance","params":["0x01"]}"#,
        )
        .await;
    let took = started.elapsed();
    assert_eq!(v["result"], "0x1", "{v}");
    // u0 is primary: the first attempt went to the hung one, and a hedge answered.
    assert_eq!(hung.hits(), 1);
    assert!(
        took < Duration::from_millis(1000),
        "answered after {took:?}, as with a 2 s delay"
    );
}
