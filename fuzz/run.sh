#!/usr/bin/env bash
# A bounded fuzz run of each target (by hand, not in CI): libFuzzer through cargo-fuzz on
# the stable toolchain (`--sanitizer none`: safe Rust needs no AddressSanitizer to find
# panics, overflows and unbounded memory). New interesting inputs are added to
# fuzz/corpus/<target>/, which tests/fuzz_corpus.rs replays in every CI run; a crash is
# written to fuzz/artifacts/<target>/ and the run fails.
#
#   fuzz/run.sh [seconds per target, default 120]
set -euo pipefail
cd "$(dirname "$0")"
SECONDS_EACH="${1:-120}"
command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked
for target in client_request upstream_reply; do
  printf '\n== %s, %s s\n' "$target" "$SECONDS_EACH"
  cargo fuzz run --sanitizer none "$target" "corpus/$target" -- \
    -max_total_time="$SECONDS_EACH" -rss_limit_mb=1024 -max_len=65536 -timeout=10 \
    -print_final_stats=1 2>&1 | grep -E '^(#[0-9]+ +DONE|stat::number_of_executed_units|stat::peak_rss_mb|==|SUMMARY|.*panicked)' || true
  if ls "artifacts/$target"/crash-* >/dev/null 2>&1; then
    echo "crash found: fuzz/artifacts/$target/"; exit 1
  fi
done
