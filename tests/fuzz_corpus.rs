//! The fuzz targets' corpus (`fuzz/corpus/`), replayed as a normal test: every input the
//! fuzzer found interesting (and the seeds) goes through the same checks as in
//! `fuzz/fuzz_targets/`, so that a crash once found stays fixed. `fuzz/run.sh` grows the
//! corpus.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;

fn replay(target: &str, run: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut inputs: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    inputs.sort();
    assert!(
        inputs.len() >= 10,
        "{}: {} inputs",
        dir.display(),
        inputs.len()
    );
    for input in inputs {
        let data = std::fs::read(&input).unwrap();
        let outcome = std::panic::catch_unwind(|| run(&data));
        assert!(outcome.is_ok(), "{} fails", input.display());
    }
}

#[test]
fn client_request_corpus() {
    replay("client_request", manifold::fuzzing::client_request);
}

#[test]
fn upstream_reply_corpus() {
    replay("upstream_reply", manifold::fuzzing::upstream_reply);
}
