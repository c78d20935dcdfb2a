#!/usr/bin/env bash
# WebSocket fan-out, run by hand (not by CI): one anvil, Manifold (release build) in front of
# it with its upstream socket (ws_url derived from url) and probes every 100 ms, and SOCKETS
# client sockets (examples/ws_fanout.rs, a process of its own) subscribed to newHeads; BLOCKS
# blocks mined one at a time. Reported per run: the time from the mining call to the first
# and the last socket's notification (the first: anvil's notification, the block fetched,
# the header sent), the spread between them (what fanning
# one head out costs), Manifold's CPU per block (utime+stime over the run, divided by the
# blocks: subscribed sockets cost only when a head goes out) and its RSS with the sockets
# open (VmRSS) and at its peak (VmHWM).
#
# Needs cargo and anvil (`bash .ci/run` installs it into .tools/). Environment: SOCKETS
# ("1000 10000"), BLOCKS (20), CARGO_TARGET_DIR.
set -euo pipefail
cd "$(dirname "$0")/.."

SOCKETS="${SOCKETS:-1000 10000}"
BLOCKS="${BLOCKS:-20}"
TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
ANVIL="${ANVIL_BIN:-$PWD/.tools/node_modules/.bin/anvil}"
[ -x "$ANVIL" ] || { echo "ws_fanout.sh: anvil not found: run bash .ci/run once, or set ANVIL_BIN" >&2; exit 1; }

ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
cargo build --release --quiet --bin manifold --example ws_fanout

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
work="$(mktemp -d)"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

anvil_port="$(free_port)"
"$ANVIL" --port "$anvil_port" --silent --no-mining >/dev/null 2>&1 &
pids+=($!)
rpc_port="$(free_port)"
admin_port="$(free_port)"
cat > "$work/manifold.toml" <<TOML
[server]
listen = "127.0.0.1:${rpc_port}"
admin_listen = "127.0.0.1:${admin_port}"
tx_store = ":memory:"
max_connections = 30000
[server.websocket]
max_connections = 30000
[[chains]]
name = "eth"
chain_id = 31337
[[chains.upstreams]]
name = "anvil"
url = "http://127.0.0.1:${anvil_port}"
[chains.policy.health]
interval = "100ms"
timeout = "100ms"
rise = 1
fall = 3
TOML
for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:${anvil_port}" -d '{}' -H 'content-type: application/json' && break; sleep 0.1; done
RUST_LOG="${MANIFOLD_LOG:-warn}" "$TARGET_DIR/release/manifold" --config "$work/manifold.toml" &
mpid=$!
pids+=($mpid)
for _ in $(seq 100); do curl -sf -o /dev/null "http://127.0.0.1:${admin_port}/readyz" && break; sleep 0.1; done

cpu() { awk '{print $14 + $15}' "/proc/$mpid/stat"; }
status_kb() { awk -v k="$1:" '$1 == k {print $2}' "/proc/$mpid/status"; }
ticks="$(getconf CLK_TCK)"

printf '%-8s %s\n' sockets result
for n in $SOCKETS; do
  before="$(cpu)"
  "$TARGET_DIR/release/examples/ws_fanout" "ws://127.0.0.1:${rpc_port}/eth" "http://127.0.0.1:${anvil_port}" "$n" "$BLOCKS" > "$work/out" &
  cpid=$!
  rss=0
  while kill -0 "$cpid" 2>/dev/null; do
    r="$(status_kb VmRSS)"; [ "$r" -gt "$rss" ] && rss="$r"
    sleep 0.2
  done
  wait "$cpid" || { curl -s "http://127.0.0.1:${admin_port}/metrics" | grep -E '^manifold_ws|^manifold_chain_head' >&2; exit 1; }
  after="$(cpu)"
  echo "-- $n sockets"
  cat "$work/out"
  awk -v a="$after" -v b="$before" -v t="$ticks" -v n="$BLOCKS" 'BEGIN { printf "manifold CPU: %.1f ms per block (connecting and subscribing included)\n", (a - b) * 1000 / t / n }'
  echo "manifold RSS with the sockets open: $((rss / 1024)) MiB (peak so far $(( $(status_kb VmHWM) / 1024 )) MiB)"
done
