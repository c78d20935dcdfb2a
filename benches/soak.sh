#!/usr/bin/env bash
# Soak, run by hand (not by CI), bounded: SOAK_SECONDS (default 600) of mixed load on a
# release build while its upstreams flap, and nobody scrapes /metrics until the end. The
# proxy's RSS is sampled every SAMPLE_EVERY seconds (10) from /proc and printed as a curve;
# the run passes when RSS is flat after the warm-up (WARMUP seconds, 60): the mean of the
# last quarter of the samples within FLAT_MIB (8) of the mean of the first quarter after
# warm-up.
#
#   upstreams  three examples/fixed_upstream, each behind an examples/fault_path
#   load       wrk, CONNECTIONS (64) keep-alive connections, a mix of single calls
#              (eth_getBalance, eth_blockNumber, eth_chainId), 5-item batches, calls to an
#              unknown chain and malformed bodies
#   flapping   every FLAP_EVERY seconds (20), one path in turn goes refuse, blackhole or
#              503 for half of that time, then back to pass
#
# Needs wrk (installed with apt-get when missing, as root), curl, cargo.
set -euo pipefail
cd "$(dirname "$0")/.."

SOAK_SECONDS="${SOAK_SECONDS:-600}"
SAMPLE_EVERY="${SAMPLE_EVERY:-10}"
WARMUP="${WARMUP:-60}"
FLAT_MIB="${FLAT_MIB:-8}"
CONNECTIONS="${CONNECTIONS:-64}"
FLAP_EVERY="${FLAP_EVERY:-20}"
TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"

say() { printf '== %s\n' "$*" >&2; }
die() { printf 'soak.sh: %s\n' "$*" >&2; exit 1; }

if ! command -v wrk >/dev/null; then
  say "installing wrk (apt-get)"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q wrk >/dev/null 2>&1 ||
    { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q wrk >/dev/null; } ||
    die "cannot install wrk"
fi
for t in wrk curl ss; do command -v "$t" >/dev/null || die "$t not found"; done

say "cargo build --release (manifold, examples/fixed_upstream, examples/fault_path)"
cargo build --release --quiet --bin manifold --example fixed_upstream --example fault_path
MANIFOLD="$TARGET_DIR/release/manifold"
UPSTREAM="$TARGET_DIR/release/examples/fixed_upstream"
FAULT_PATH="$TARGET_DIR/release/examples/fault_path"
ulimit -n 65536 2>/dev/null || true

WORK="$(mktemp -d /tmp/manifold-soak.XXXXXX)"
# shellcheck source=benches/lib.sh
. benches/lib.sh

# Three upstreams, each behind a fault path driven through a FIFO on its stdin.
PATHS=()
for i in 0 1 2; do
  "$UPSTREAM" --chain-id 1 --threads 1 >"$WORK/up$i.out" 2>&1 &
  PIDS+=("$!")
  wait_for 10 grep -q 'listening on' "$WORK/up$i.out" || die "upstream $i did not start"
  up_port="$(sed -n 's/.*listening on 127.0.0.1:\([0-9]*\).*/\1/p' "$WORK/up$i.out")"
  path_port="$(free_port)"
  mkfifo "$WORK/path$i.in"
  "$FAULT_PATH" --listen "127.0.0.1:$path_port" --target "http://127.0.0.1:$up_port" \
    <"$WORK/path$i.in" >"$WORK/path$i.out" 2>&1 &
  PIDS+=("$!")
  # Keep the FIFO open for writing for the whole run (fd 10, 11, 12).
  eval "exec $((10 + i))>\"$WORK/path$i.in\""
  wait_for 10 grep -q 'listening on' "$WORK/path$i.out" || die "fault path $i did not start"
  PATHS+=("$path_port")
done
set_fault() { echo "$2" >&$((10 + $1)); }

MF_PORT="$(free_port)"
MF_ADMIN="$(free_port)"
cat >"$WORK/soak.toml" <<EOF
[server]
listen = "127.0.0.1:$MF_PORT"
admin_listen = "127.0.0.1:$MF_ADMIN"
tx_store = ":memory:"

[[chains]]
name = "eth"
chain_id = 1
EOF
for i in 0 1 2; do
  cat >>"$WORK/soak.toml" <<EOF

[[chains.upstreams]]
name = "u$i"
url = "http://127.0.0.1:${PATHS[$i]}"
failure_domain = "d$i"
timeout = "2s"
EOF
done
cat >>"$WORK/soak.toml" <<'EOF'

[chains.policy]
request_timeout = "5s"

[chains.policy.health]
interval = "2s"
timeout = "1s"
EOF
"$MANIFOLD" --config "$WORK/soak.toml" 2>"$WORK/manifold.log" &
MF_PID=$!
PIDS+=("$MF_PID")
wait_for 20 curl -sf "http://127.0.0.1:$MF_ADMIN/readyz" || die "manifold not ready: $(tail -5 "$WORK/manifold.log")"

cat >"$WORK/mix.lua" <<'EOF'
-- A mix of calls, chosen in turn; counts answers that are not HTTP 200 with a result.
local bodies = {
  {"/eth", '{"jsonrpc":"2.0","id":1,"method":"eth_getBalance","params":["0xf39fd6e51aad88f6f4ce6ab8827279cfffb92266","latest"]}'},
  {"/eth", '{"jsonrpc":"2.0","id":"a","method":"eth_blockNumber","params":[]}'},
  {"/eth", '[{"jsonrpc":"2.0","id":1,"method":"eth_chainId"},{"jsonrpc":"2.0","id":2,"method":"eth_blockNumber"},{"jsonrpc":"2.0","id":3,"method":"eth_getBalance","params":["0x0","latest"]},{"jsonrpc":"2.0","id":4,"method":"eth_chainId"},{"jsonrpc":"2.0","id":5,"method":"eth_blockNumber"}]'},
  {"/eth", '{"jsonrpc":"2.0","id":1,"method":"eth_chainId"}'},
  {"/nope", '{"jsonrpc":"2.0","id":1,"method":"eth_chainId"}'},
  {"/eth", '{"jsonrpc":"2.0","id":1,"method":'},
}
local n = 0
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) failed = 0 end
request = function()
  n = n + 1
  local b = bodies[(n % #bodies) + 1]
  return wrk.format("POST", b[1], {["Content-Type"] = "application/json"}, b[2])
end
function response(status, headers, body)
  if status ~= 200 and status ~= 404 then failed = failed + 1 end
end
function done(summary, latency, requests)
  local f = 0
  for _, t in ipairs(threads) do f = f + t:get("failed") end
  io.write(string.format("unexpected_status %d\n", f))
end
EOF

say "soak: $SOAK_SECONDS s, $CONNECTIONS connections, paths flapping every $FLAP_EVERY s, RSS every $SAMPLE_EVERY s"
wrk -t2 -c"$CONNECTIONS" -d"${SOAK_SECONDS}s" --latency -s "$WORK/mix.lua" \
  "http://127.0.0.1:$MF_PORT" >"$WORK/wrk.txt" 2>&1 &
WRK_PID=$!
PIDS+=("$WRK_PID")
(
  faults=(refuse blackhole 503)
  k=0
  while :; do
    sleep "$((FLAP_EVERY / 2))"
    set_fault $((k % 3)) "${faults[$((k % 3))]}"
    sleep "$((FLAP_EVERY / 2))"
    set_fault $((k % 3)) pass
    k=$((k + 1))
  done
) &
PIDS+=("$!")

rss_mib() { awk '/^VmRSS:/ {printf "%.1f", $2 / 1024}' "/proc/$MF_PID/status"; }
SAMPLES=()
printf '   t(s)  RSS(MiB)\n' >&2
for ((t = SAMPLE_EVERY; t <= SOAK_SECONDS; t += SAMPLE_EVERY)); do
  sleep "$SAMPLE_EVERY"
  r="$(rss_mib)"
  SAMPLES+=("$t:$r")
  bar="$(awk -v r="$r" 'BEGIN { n = int(r / 2); s = ""; for (i = 0; i < n; i++) s = s "#"; print s }')"
  printf '  %5d  %7s  %s\n' "$t" "$r" "$bar" >&2
done
wait "$WRK_PID" || true
sed 's/^/   | /' "$WORK/wrk.txt" >&2

# The one scrape, at the end.
metrics="$(curl -sf "http://127.0.0.1:$MF_ADMIN/metrics")"
calls="$(awk '/^manifold_requests_total/ {s += $NF} END {printf "%d", s}' <<<"$metrics")"
failed="$(awk '/^manifold_requests_total/ && !/outcome="(success|rpc_error)"/ {s += $NF} END {printf "%d", s}' <<<"$metrics")"
say "calls answered: $calls, of which not success/rpc_error: $failed; RSS now $(rss_mib) MiB, peak $(awk '/^VmHWM:/ {printf "%.1f", $2 / 1024}' "/proc/$MF_PID/status") MiB"

verdict="$(printf '%s\n' "${SAMPLES[@]}" | awk -F: -v warm="$WARMUP" -v flat="$FLAT_MIB" '
  BEGIN { n = 0 }
  $1 > warm { t[n] = $1; r[n] = $2; n++ }
  END {
    if (n < 4) { print "too few samples after warm-up"; exit }
    q = int(n / 4)
    for (i = 0; i < q; i++) { a += r[i]; b += r[n - 1 - i] }
    a /= q; b /= q
    printf "first quarter after warm-up %.1f MiB, last quarter %.1f MiB: %s\n", a, b, (b - a <= flat ? "flat" : "GROWING")
  }')"
say "$verdict"
[[ "$verdict" == *flat* ]]
