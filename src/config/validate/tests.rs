//! Tests of `validate`, kept apart so that the module itself stays short.
use std::time::Duration;

use super::*;

#[path = "cache_tests.rs"]
mod cache_tests;
use crate::config::{BreakerPolicy, HedgeDelay, HedgePolicy, Tier, MEMORY_STORE};

pub(super) fn load_str(text: &str) -> Result<Config, ConfigErrors> {
    let env = |k: &str| match k {
        "TOKEN" => Some("tok-very-secret-value".to_string()),
        "KEY" => Some("k3y".to_string()),
        _ => None,
    };
    load(text, "test.toml", &env)
}

pub(super) fn errors(text: &str) -> Vec<String> {
    load_str(text)
        .unwrap_err()
        .0
        .iter()
        .map(ToString::to_string)
        .collect()
}

pub(super) const MINIMAL: &str = r#"
    [[chains]]
    name = "ethereum"
    chain_id = 1
    [[chains.upstreams]]
    name = "a"
    url = "http://127.0.0.1:8545"
"#;

#[test]
fn minimal_config_gets_defaults() {
    let c = load_str(MINIMAL).unwrap();
    assert_eq!(c.server.listen.to_string(), "127.0.0.1:8645");
    assert_eq!(c.server.max_batch_len, 1000);
    let u = &c.chains[0].upstreams[0];
    assert_eq!(u.tier, Tier::Primary);
    assert_eq!(u.failure_domain, "127.0.0.1");
    assert_eq!(c.chains[0].policy.max_attempts, 3);
    assert_eq!(c.warnings.len(), 1, "single failure domain warns");
}

#[test]
fn unknown_keys_are_errors_with_their_path() {
    let e = errors(&MINIMAL.replace("chain_id = 1", "chain_id = 1\nchian = 2"));
    assert_eq!(e.len(), 1);
    assert!(e[0].starts_with("test.toml: chains[0]"), "{e:?}");
    assert!(e[0].contains("unknown field `chian`"), "{e:?}");
    let e = errors(&format!("[server]\nadmin_lisen = \"x\"\n{MINIMAL}"));
    assert!(e[0].contains("unknown field `admin_lisen`"), "{e:?}");
}

#[test]
fn wrong_types_name_the_key() {
    let e = errors(&MINIMAL.replace("chain_id = 1", "chain_id = \"one\""));
    assert!(e[0].starts_with("test.toml: chains[0].chain_id: "), "{e:?}");
}

#[test]
fn toml_syntax_errors_name_the_file() {
    let e = errors("[[chains]\nname=");
    assert!(e[0].starts_with("test.toml: invalid TOML"), "{e:?}");
}

#[test]
fn every_value_error_is_reported_with_its_key() {
    let e = errors(
        r#"
        [server]
        listen = "nope"
        max_batch_len = 0
        shutdown_timeout = "soon"
        [[chains]]
        name = "eth/main"
        [[chains.upstreams]]
        name = "a"
        url = "ftp://x"
        tier = "best"
        weight = 0
        timeout = "0s"
        [[chains.upstreams]]
        name = "a"
        url = "not a url"
        headers = { "bad header" = "x" }
        "#,
    );
    let joined = e.join("\n");
    for needle in [
        "test.toml: server.listen: `nope` is not an address",
        "test.toml: server.max_batch_len: must be at least 1",
        "test.toml: server.shutdown_timeout: `soon` is not a duration",
        "test.toml: chains[0].name: `eth/main` cannot be a URL path segment",
        "test.toml: chains[0].chain_id: required for an evm chain",
        "test.toml: chains[0].upstreams[0].url: scheme `ftp` is not supported",
        "test.toml: chains[0].upstreams[0].tier: unknown tier `best`",
        "test.toml: chains[0].upstreams[0].weight: 0 is out of range",
        "test.toml: chains[0].upstreams[0].timeout: must be greater than zero",
        "test.toml: chains[0].upstreams[1].name: duplicate upstream name `a`",
        "test.toml: chains[0].upstreams[1].url: not a valid URL",
        "test.toml: chains[0].upstreams[1].headers.bad header: not a valid HTTP header name",
    ] {
        assert!(joined.contains(needle), "missing {needle:?} in\n{joined}");
    }
}

#[test]
fn no_chains_is_an_error() {
    let e = errors("[server]\n");
    assert_eq!(
        e,
        vec!["test.toml: chains: at least one [[chains]] entry is required"]
    );
}

#[test]
fn later_features_say_not_supported_yet() {
    let e = errors(&MINIMAL.replace("chain_id = 1", "chain_id = 1\nfamily = \"solana\""));
    assert!(
        e.iter()
            .any(|l| l.contains("chains[0].family: `solana` is not supported yet")),
        "{e:?}"
    );
}

#[test]
fn resilience_policy_keys() {
    let c = load_str(&format!(
        "{MINIMAL}\n[chains.policy]\nheavy_request_timeout = \"5m\"\n\
         retry = {{ max_attempts = 4, budget = 0.5 }}\n\
         hedge = {{ delay = \"150ms\", max_extra = 2, budget = 0.05 }}\n\
         breaker = {{ consecutive_failures = 7, failure_rate = 0.8, window = 40, \
         open_duration = \"2s\", max_open_duration = \"1m\", half_open_requests = 3 }}\n"
    ))
    .unwrap();
    let p = &c.chains[0].policy;
    assert_eq!(p.heavy_request_timeout, Duration::from_secs(300));
    assert_eq!((p.max_attempts, p.retry_budget), (4, 0.5));
    assert_eq!(
        p.hedge,
        HedgePolicy {
            delay: HedgeDelay::Fixed(Duration::from_millis(150)),
            max_extra: 2,
            budget: 0.05
        }
    );
    assert_eq!(
        p.breaker,
        BreakerPolicy {
            consecutive_failures: 7,
            failure_rate: 0.8,
            window: 40,
            open_duration: Duration::from_secs(2),
            max_open_duration: Duration::from_secs(60),
            half_open_requests: 3,
        }
    );
    let off = load_str(&format!(
        "{MINIMAL}\n[chains.policy]\nhedge = {{ delay = \"off\" }}\n"
    ))
    .unwrap();
    assert_eq!(off.chains[0].policy.hedge.delay, HedgeDelay::Off);
    let d = load_str(MINIMAL).unwrap();
    assert_eq!(d.chains[0].policy.hedge, HedgePolicy::default());
    assert_eq!(d.chains[0].policy.breaker, BreakerPolicy::default());
}

#[test]
fn resilience_policy_errors_name_the_key() {
    let e = errors(&format!(
        "{MINIMAL}\n[chains.policy]\nretry = {{ budget = 1.5 }}\n\
         hedge = {{ delay = \"soon\", max_extra = 9 }}\n\
         breaker = {{ failure_rate = 0.0, window = 0, open_duration = \"1m\", max_open_duration = \"10s\" }}\n"
    ));
    let joined = e.join("\n");
    for needle in [
        "chains[0].policy.retry.budget: 1.5 is out of range 0..=1",
        "chains[0].policy.hedge.delay: `soon` is not a duration",
        "chains[0].policy.hedge.max_extra: 9 is out of range 0..=4",
        "chains[0].policy.breaker.failure_rate: 0 is out of range",
        "chains[0].policy.breaker.window: 0 is out of range 1..=10000",
        "chains[0].policy.breaker.max_open_duration: 10s is shorter than open_duration (1m)",
    ] {
        assert!(joined.contains(needle), "missing {needle:?} in\n{joined}");
    }
    let e = errors(&MINIMAL.replace(
        "url = \"http://127.0.0.1:8545\"",
        "url = \"http://127.0.0.1:8545\"\nmax_rps = 0\nmax_in_flight = 0",
    ));
    assert!(
        e.iter()
            .any(|l| l.contains("upstreams[0].max_rps: must be at least 1")),
        "{e:?}"
    );
    assert!(
        e.iter()
            .any(|l| l.contains("upstreams[0].max_in_flight: 0 is out of range 1..=65536")),
        "{e:?}"
    );
}

#[test]
fn secrets_are_interpolated_and_never_shown() {
    let c = load_str(&MINIMAL.replace(
        r#"url = "http://127.0.0.1:8545""#,
        r#"url = "https://rpc.example.io/v2/${KEY}"
           headers = { Authorization = "Bearer ${TOKEN}" }"#,
    ))
    .unwrap();
    let u = &c.chains[0].upstreams[0];
    assert_eq!(u.url.as_str(), "https://rpc.example.io/v2/k3y");
    assert_eq!(u.display_url, "https://rpc.example.io/v2/***");
    assert_eq!(u.failure_domain, "rpc.example.io");
    let shown = c.redacted().to_string();
    assert!(
        !shown.contains("k3y") && !shown.contains("tok-very-secret-value"),
        "{shown}"
    );
    assert!(
        shown.contains("\"Authorization\":\"***\"") || shown.contains("\"authorization\":\"***\""),
        "{shown}"
    );
}

#[test]
fn secrets_do_not_leak_through_type_errors() {
    let e = errors(&MINIMAL.replace(
        r#"name = "a""#,
        r#"name = "a"
           weight = "${TOKEN}""#,
    ));
    let joined = e.join("\n");
    assert!(!joined.contains("tok-very-secret-value"), "{joined}");
    assert!(joined.contains("chains[0].upstreams[0].weight"), "{joined}");
    assert!(joined.contains("***"), "{joined}");
}

#[test]
fn missing_env_var_names_key_and_variable() {
    let e = errors(&MINIMAL.replace("http://127.0.0.1:8545", "https://x.io/${NOPE}"));
    assert_eq!(
        e,
        vec!["test.toml: chains[0].upstreams[0].url: environment variable `NOPE` is not set"]
    );
}

#[test]
fn no_warning_with_two_failure_domains() {
    let c = load_str(&format!(
        "{MINIMAL}\n[[chains.upstreams]]\nname = \"b\"\nurl = \"https://other.example\"\n"
    ))
    .unwrap();
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
}

#[test]
fn broadcast_and_watch_keys() {
    let base = "[[chains]]\nname = \"eth\"\nchain_id = 1\n[[chains.upstreams]]\nname = \"a\"\nurl = \"http://127.0.0.1:8545\"\n";
    let c = load_str(base).unwrap();
    let b = &c.chains[0].policy.broadcast;
    assert!(b.watch);
    assert_eq!(b.fanout, 3);
    assert_eq!(b.rebroadcast_after, Duration::from_secs(36));
    assert_eq!(b.watch_for, Duration::from_secs(3600));
    assert_eq!(b.finality_depth, 64);
    assert_eq!(b.max_watched, 10_000);
    assert_eq!(
        c.server.tx_store.as_deref(),
        Some(std::path::Path::new("manifold-tx.redb"))
    );
    let c = load_str(&format!(
        "[server]\ntx_store = \"{MEMORY_STORE}\"\n{base}[chains.policy.broadcast]\nwatch = false\nrebroadcast_after = \"5s\"\nwatch_for = \"10m\"\nfinality_depth = 12\nmax_watched = 50\n"
    ))
    .unwrap();
    let b = &c.chains[0].policy.broadcast;
    assert!(!b.watch);
    assert_eq!(b.rebroadcast_after, Duration::from_secs(5));
    assert_eq!(b.watch_for, Duration::from_secs(600));
    assert_eq!((b.finality_depth, b.max_watched), (12, 50));
    assert_eq!(c.server.tx_store, None);
    let e = errors(&format!(
        "[server]\ntx_store = \"\"\n{base}[chains.policy.broadcast]\nrebroadcast_after = \"2h\"\nwatch_for = \"1h\"\nfinality_depth = 0\nmax_watched = 0\nwatchh = true\n"
    ));
    assert_eq!(e.len(), 1, "unknown keys first: {e:?}");
    assert!(e[0].contains("watchh"), "{e:?}");
    let e = errors(&format!(
        "[server]\ntx_store = \"\"\n{base}[chains.policy.broadcast]\nrebroadcast_after = \"2h\"\nwatch_for = \"1h\"\nfinality_depth = 0\nmax_watched = 0\n"
    ));
    let all = e.join("\n");
    for key in [
        "server.tx_store",
        "chains[0].policy.broadcast.watch_for",
        "chains[0].policy.broadcast.finality_depth",
        "chains[0].policy.broadcast.max_watched",
    ] {
        assert!(all.contains(key), "{key} missing in {all}");
    }
    assert!(all.contains("test.toml"), "{all}");
}

#[test]
fn durations_are_bounded() {
    let base = "[[chains]]\nname = \"eth\"\nchain_id = 1\n[[chains.upstreams]]\nname = \"a\"\nurl = \"http://127.0.0.1:8545\"\n";
    let e = errors(&format!(
        "[server]\nshutdown_timeout = \"100000000000d\"\n{base}timeout = \"2d\"\n[chains.policy]\nrequest_timeout = \"25h\"\n[chains.policy.broadcast]\nwatch_for = \"31d\"\n"
    ))
    .join("\n");
    for key in [
        "server.shutdown_timeout",
        "chains[0].upstreams[0].timeout",
        "chains[0].policy.request_timeout",
        "chains[0].policy.broadcast.watch_for",
    ] {
        assert!(e.contains(key), "{key} missing in {e}");
    }
    assert!(e.contains("longer than the most allowed, 1day"), "{e}");
    // A week of watching is fine.
    assert!(load_str(&format!(
        "{base}[chains.policy.broadcast]\nwatch_for = \"7d\"\n"
    ))
    .is_ok());
}

#[test]
fn limits_have_defaults_ranges_and_fit_together() {
    let base = "[[chains]]\nname = \"eth\"\nchain_id = 1\n[[chains.upstreams]]\nname = \"a\"\nurl = \"http://127.0.0.1:8545\"\n";
    let c = load_str(base).unwrap();
    assert_eq!(c.server.max_connections, 4096);
    assert_eq!(c.server.max_concurrent_calls, 4096);
    assert_eq!(c.server.max_buffered_bytes, 256 << 20);
    assert_eq!(c.chains[0].policy.max_response_bytes, 64 << 20);
    let c = load_str(&format!(
        "[server]\nmax_connections = 10\nmax_concurrent_calls = 20\nmax_buffered_bytes = 2097152\n{base}[chains.policy]\nmax_response_bytes = 1048576\n"
    ))
    .unwrap();
    assert_eq!(
        (c.server.max_connections, c.server.max_concurrent_calls),
        (10, 20)
    );
    assert_eq!(c.server.max_buffered_bytes, 2 << 20);
    assert_eq!(c.chains[0].policy.max_response_bytes, 1 << 20);
    let e = errors(&format!(
        "[server]\nmax_connections = 0\nmax_concurrent_calls = 2000000\nmax_buffered_bytes = 100\n{base}[chains.policy]\nmax_response_bytes = 10\n"
    ))
    .join("\n");
    for key in [
        "server.max_connections: 0 is out of range",
        "server.max_concurrent_calls: 2000000 is out of range",
        "server.max_buffered_bytes: 100 is out of range",
        "chains[0].policy.max_response_bytes: 10 is out of range",
    ] {
        assert!(e.contains(key), "{key} missing in {e}");
    }
    // A chain's largest answer must fit in the budget.
    let e = errors(&format!("[server]\nmax_buffered_bytes = 33554432\n{base}")).join("\n");
    assert!(
        e.contains("chains[0].policy.max_response_bytes: 67108864 is more than server.max_buffered_bytes (33554432)"),
        "{e}"
    );
}

#[test]
fn ws_url_is_derived_set_or_off_and_its_secrets_redacted() {
    let chain = |ws: &str| {
        format!(
            "[[chains]]\nname = \"eth\"\nchain_id = 1\n[[chains.upstreams]]\nname = \"a\"\n\
             url = \"https://rpc.example.io/v2/k3y\"\n{ws}\n"
        )
    };
    let c = Config::from_toml(&chain(""), "t.toml", &|_| None).unwrap();
    let ws = c.chains[0].upstreams[0].ws.as_ref().unwrap();
    assert!(ws.derived);
    assert_eq!(ws.url.as_str(), "wss://rpc.example.io/v2/k3y");
    let c = Config::from_toml(&chain("ws_url = false"), "t.toml", &|_| None).unwrap();
    assert!(c.chains[0].upstreams[0].ws.is_none());
    let c = Config::from_toml(
        &chain("ws_url = \"wss://ws.example.io/v2/${KEY}\""),
        "t.toml",
        &|v| (v == "KEY").then(|| "s3cretkey".to_string()),
    )
    .unwrap();
    let ws = c.chains[0].upstreams[0].ws.as_ref().unwrap();
    assert!(!ws.derived);
    assert!(!ws.display_url.contains("s3cretkey"), "{}", ws.display_url);
    let err = Config::from_toml(&chain("ws_url = \"http://x\""), "t.toml", &|_| None)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("chains[0].upstreams[0].ws_url: scheme `http` is not supported"),
        "{err}"
    );
}
