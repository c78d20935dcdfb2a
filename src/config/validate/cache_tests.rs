//! Tests of the keys of the answer cache and of `eth_getLogs` in parts.

use super::{errors, load_str, MINIMAL};

#[test]
fn cache_keys_have_defaults_and_ranges() {
    let c = load_str(MINIMAL).unwrap();
    let cache = &c.chains[0].policy.cache;
    assert!(cache.enabled);
    assert_eq!(cache.max_bytes, 64 * 1024 * 1024);
    assert_eq!(cache.max_entry_bytes, 64 * 1024 * 1024 / 100);
    assert_eq!(cache.finality_depth, None);
    let c = load_str(&format!(
        "{MINIMAL}\n[chains.policy.cache]\nenabled = false\nmax_bytes = 2097152\nfinality_depth = 12\n"
    ))
    .unwrap();
    let cache = &c.chains[0].policy.cache;
    assert!(!cache.enabled);
    assert_eq!(cache.max_entry_bytes, 20971);
    assert_eq!(cache.finality_depth, Some(12));
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
