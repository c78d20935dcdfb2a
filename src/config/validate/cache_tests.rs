//! Tests of the keys of the answer cache (Redis included) and of `eth_getLogs` in parts.

use super::{errors, load_str, MINIMAL};

#[test]
fn cache_keys_have_defaults_and_ranges() {
    let c = load_str(MINIMAL).unwrap();
    let cache = &c.chains[0].policy.cache;
    assert!(cache.enabled);
    assert_eq!(cache.max_bytes, 64 * 1024 * 1024);
    assert_eq!(cache.max_entry_bytes, 64 * 1024 * 1024 / 100);
    assert_eq!(cache.finality_depth, None);
    assert_eq!(cache.latest_ttl, None, "latest never kept by default");
    let c = load_str(&format!(
        "{MINIMAL}\n[chains.policy.cache]\nenabled = false\nmax_bytes = 2097152\nfinality_depth = 12\nlatest_ttl = \"2s\"\n"
    ))
    .unwrap();
    let cache = &c.chains[0].policy.cache;
    assert!(!cache.enabled);
    assert_eq!(cache.max_entry_bytes, 20971);
    assert_eq!(cache.finality_depth, Some(12));
    assert_eq!(cache.latest_ttl, Some(std::time::Duration::from_secs(2)));
    let e = errors(&format!(
        "{MINIMAL}\n[chains.policy.cache]\nlatest_ttl = \"2m\"\n"
    ));
    assert!(
        e.iter()
            .any(|l| l.contains("chains[0].policy.cache.latest_ttl") && l.contains("longer")),
        "{e:?}"
    );
    let e = errors(&format!(
        "{MINIMAL}\n[chains.policy.cache]\nmax_bytes = 2097152\nmax_entry_bytes = 4194304\nfinality_depth = 0\nsize = 1\n"
    ));
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(
        e[0].contains("chains[0].policy.cache") && e[0].contains("size"),
        "{e:?}"
    );
    let e = errors(&format!(
        "{MINIMAL}\n[chains.policy.cache]\nmax_bytes = 2097152\nmax_entry_bytes = 4194304\nfinality_depth = 0\n"
    ));
    assert!(
        e.iter().any(|l| l.contains(
            "chains[0].policy.cache.max_entry_bytes: 4194304 is out of range 1024 to 2097152"
        )),
        "{e:?}"
    );
    assert!(
        e.iter()
            .any(|l| l.contains("chains[0].policy.cache.finality_depth: must be at least 1")),
        "{e:?}"
    );
}

#[test]
fn logs_range_keys_have_defaults_and_ranges() {
    let c = load_str(MINIMAL).unwrap();
    assert_eq!(c.chains[0].upstreams[0].max_logs_range, 2000);
    assert_eq!(c.chains[0].policy.max_logs_blocks, 100_000);
    let text = MINIMAL.replace(
        "url = \"http://127.0.0.1:8545\"",
        "url = \"http://127.0.0.1:8545\"\nmax_logs_range = 10000",
    );
    let c = load_str(&format!(
        "{text}\n[chains.policy]\nmax_logs_blocks = 500000\n"
    ))
    .unwrap();
    assert_eq!(c.chains[0].upstreams[0].max_logs_range, 10_000);
    assert_eq!(c.chains[0].policy.max_logs_blocks, 500_000);
    let text = MINIMAL.replace(
        "url = \"http://127.0.0.1:8545\"",
        "url = \"http://127.0.0.1:8545\"\nmax_logs_range = 0",
    );
    let e = errors(&format!("{text}\n[chains.policy]\nmax_logs_blocks = 0\n"));
    assert!(
        e.iter()
            .any(|l| l.contains("chains[0].upstreams[0].max_logs_range: 0 is out of range")),
        "{e:?}"
    );
    assert!(
        e.iter()
            .any(|l| l.contains("chains[0].policy.max_logs_blocks: 0 is out of range")),
        "{e:?}"
    );
}

#[test]
fn redis_keys_have_defaults_and_name_what_is_wrong() {
    let c = load_str(&format!(
        "[server.redis]\nurl = \"redis://:s3cret@10.0.0.5:6379/2\"\n{MINIMAL}"
    ))
    .unwrap();
    let r = c.server.redis.as_ref().unwrap();
    assert_eq!(r.timeout, std::time::Duration::from_millis(50));
    assert_eq!(r.ttl, std::time::Duration::from_secs(86_400));
    assert_eq!(r.prefix, "manifold");
    assert!(!r.display_url.contains("s3cret"), "{}", r.display_url);
    assert!(!format!("{r:?}").contains("s3cret"));
    assert!(!c.redacted().to_string().contains("s3cret"));
    assert!(load_str(MINIMAL).unwrap().server.redis.is_none());
    let e = errors(&format!(
        "[server.redis]\nurl = \"rediss://cache:6380\"\ntimeout = \"20s\"\nttl = \"100ms\"\nprefix = \"a b\"\n{MINIMAL}"
    ));
    for want in [
        "server.redis.url: rediss:// (TLS) is not supported yet",
        "server.redis.timeout",
        "server.redis.ttl: must be at least 1s",
        "server.redis.prefix: must be a non-empty word",
    ] {
        assert!(e.iter().any(|l| l.contains(want)), "{want}: {e:?}");
    }
    let e = errors(&format!(
        "[server.redis]\nurl = \"http://cache\"\n{MINIMAL}"
    ));
    assert!(
        e.iter()
            .any(|l| l.contains("server.redis.url: must be redis://host:port, not http://")),
        "{e:?}"
    );
}
