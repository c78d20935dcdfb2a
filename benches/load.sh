#!/usr/bin/env bash
# Load comparison on loopback, run by hand (not by CI): one load generator, one fixed-answer
# upstream, three targets in one run, so that the figures compare like with like.
#
#   direct    wrk -> upstream
#   nginx     wrk -> nginx (plain reverse proxy, upstream keepalive) -> upstream
#   manifold  wrk -> manifold (release build) -> upstream
#
# then two Manifold-only runs:
#
#   blackhole  three upstreams, hedging on; one of them stops answering BLACKHOLE_AT seconds
#              into the run (connections stay open, nothing comes back: a hung node)
#   c1000      MANY concurrent keep-alive connections (nginx alongside, for comparison)
#
# and one run of calls over WebSocket against calls over HTTP (RUNS=ws): the same client
# (examples/call_load.rs, one call in flight per connection, as wrk) against the upstream
# directly, Manifold over HTTP and Manifold over WebSocket.
#
# The upstream is examples/fixed_upstream.rs, not an nginx `return 200`: Manifold sends its
# own ids upstream and checks the answer's id, and its health probes (eth_chainId,
# eth_blockNumber, eth_syncing) each need their own answer. Every target uses the same one.
#
# Reported per run: requests/s, p50/p99 latency (wrk --latency), JSON-RPC errors (any answer
# not HTTP 200 or carrying "error", counted by the wrk script), wrk socket errors, the proxy's
# CPU time per request (utime+stime from /proc/PID/stat, nginx master and workers summed,
# divided by requests) and its peak RSS (VmHWM; nginx: master and workers summed, which
# counts shared pages more than once).
#
# Needs root or an installed nginx and wrk (installs them with apt-get when missing), cargo.
# Environment: DURATION (s per run, default 10), CONNECTIONS (64), WRK_THREADS (2),
# MANY (1000), BLACKHOLE_AT (2), BLACKHOLE_DURATION (2 x DURATION), METHOD (eth_getBalance |
# eth_blockNumber | eth_chainId: see below), RUNS ("compare blackhole ws", the default, or any of them), CARGO_TARGET_DIR.
# Total time: about 7 x DURATION plus the build.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION="${DURATION:-10}"
CONNECTIONS="${CONNECTIONS:-64}"
WRK_THREADS="${WRK_THREADS:-2}"
MANY="${MANY:-1000}"
BLACKHOLE_AT="${BLACKHOLE_AT:-2}"
# Long enough by default for the health checks (every 5 s, 3 s timeout, 2 in a row) to
# take the hung upstream out during the run.
BLACKHOLE_DURATION="${BLACKHOLE_DURATION:-$((2 * DURATION))}"
METHOD="${METHOD:-eth_getBalance}"
RUNS="${RUNS:-compare blackhole ws}"
want() { [[ " $RUNS " == *" $1 "* ]]; }
TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"

say() { printf '== %s\n' "$*" >&2; }
die() { printf 'load.sh: %s\n' "$*" >&2; exit 1; }

# ---------------------------------------------------------------------------------------
# tools and build

if ! command -v nginx >/dev/null || ! command -v wrk >/dev/null; then
  say "installing nginx and wrk (apt-get)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q nginx wrk >/dev/null 2>&1 ||
    { apt-get update -q >/dev/null && apt-get install -y -q nginx wrk >/dev/null; } ||
    die "cannot install nginx and wrk"
fi
NGINX="$(command -v nginx || echo /usr/sbin/nginx)"
for t in wrk curl ss; do command -v "$t" >/dev/null || die "$t not found"; done

say "cargo build --release (manifold, examples/fixed_upstream)"
cargo build --release --quiet --bin manifold --example fixed_upstream --example call_load
CALL_LOAD="$TARGET_DIR/release/examples/call_load"
MANIFOLD="$TARGET_DIR/release/manifold"
UPSTREAM="$TARGET_DIR/release/examples/fixed_upstream"

ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" || true
TICKS="$(getconf CLK_TCK)"

# ---------------------------------------------------------------------------------------
# processes: everything started here is killed on exit

WORK="$(mktemp -d /tmp/manifold-load.XXXXXX)"
chmod 755 "$WORK"
# shellcheck source=benches/lib.sh
. benches/lib.sh

# start_upstream NAME: runs one fixed upstream, sets UP_PORT and UP_PID.
start_upstream() {
  local out="$WORK/$1.out"
  "$UPSTREAM" --chain-id 1 --threads 1 >"$out" 2>&1 &
  UP_PID=$!
  PIDS+=("$UP_PID")
  wait_for 10 grep -q 'listening on' "$out" || die "upstream $1 did not start: $(cat "$out")"
  UP_PORT="$(sed -n 's/.*listening on 127.0.0.1:\([0-9]*\).*/\1/p' "$out")"
}

# start_nginx UPSTREAM_PORT: sets NGINX_PORT and NGINX_PID (the master).
start_nginx() {
  NGINX_PORT="$(free_port)"
  mkdir -p "$WORK/nginx"
  cat >"$WORK/nginx/nginx.conf" <<EOF
worker_processes auto;
worker_rlimit_nofile 65536;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log warn;
events { worker_connections 8192; }
http {
  access_log off;
  client_body_temp_path $WORK/nginx/body;
  proxy_temp_path $WORK/nginx/proxy;
  fastcgi_temp_path $WORK/nginx/fastcgi;
  uwsgi_temp_path $WORK/nginx/uwsgi;
  scgi_temp_path $WORK/nginx/scgi;
  keepalive_requests 1000000;
  upstream fixed {
    server 127.0.0.1:$1;
    keepalive 256;
    keepalive_requests 1000000;
  }
  server {
    listen 127.0.0.1:$NGINX_PORT;
    location / {
      proxy_pass http://fixed;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
}
EOF
  "$NGINX" -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" -g 'daemon off;' 2>>"$WORK/nginx/error.log" &
  NGINX_PID=$!
  PIDS+=("$NGINX_PID")
  wait_for 10 curl -sf -o /dev/null -H 'content-type: application/json' -d "$BODY" \
    "http://127.0.0.1:$NGINX_PORT/" || die "nginx did not start: $(cat "$WORK/nginx/error.log")"
}

# start_manifold NAME UPSTREAM_PORT...: sets MF_PORT, MF_ADMIN and MF_PID.
start_manifold() {
  local name="$1"; shift
  MF_PORT="$(free_port)"
  MF_ADMIN="$(free_port)"
  local cfg="$WORK/$name.toml" i=0 p
  cat >"$cfg" <<EOF
[server]
listen = "127.0.0.1:$MF_PORT"
admin_listen = "127.0.0.1:$MF_ADMIN"
tx_store = "$WORK/$name-tx.redb"

[[chains]]
name = "eth"
chain_id = 1
EOF
  for p in "$@"; do
    cat >>"$cfg" <<EOF

[[chains.upstreams]]
name = "u$i"
url = "http://127.0.0.1:$p"
failure_domain = "d$i"
EOF
    i=$((i + 1))
  done
  cat >>"$cfg" <<EOF

[chains.policy.hedge]
delay = "auto"
max_extra = 1
EOF
  "$MANIFOLD" --config "$cfg" 2>"$WORK/$name.log" &
  MF_PID=$!
  PIDS+=("$MF_PID")
  wait_for 20 curl -sf "http://127.0.0.1:$MF_ADMIN/readyz" ||
    die "manifold did not become ready: $(tail -5 "$WORK/$name.log")"
  # The first call waits for every upstream's first probe.
  wait_for 10 curl -sf -o /dev/null -H 'content-type: application/json' -d "$BODY" \
    "http://127.0.0.1:$MF_PORT/" || die "manifold does not answer"
}

stop() { kill "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }

# ---------------------------------------------------------------------------------------
# measuring

# eth_getBalance: every request asks for another account, so that no two calls in flight are
# the same and each is proxied (Manifold shares identical calls in flight). eth_blockNumber:
# the same call on every connection, which Manifold coalesces. eth_chainId: answered from
# Manifold's cache after the first (nginx proxies every one).
VARY=""
case "$METHOD" in
  eth_blockNumber) BODY='{"jsonrpc":"2.0","id":1,"method":"eth_blockNumber","params":[]}' ;;
  eth_chainId) BODY='{"jsonrpc":"2.0","id":1,"method":"eth_chainId","params":[]}' ;;
  eth_getBalance)
    BODY='{"jsonrpc":"2.0","id":1,"method":"eth_getBalance","params":["0xf39fd6e51aad88f6f4ce6ab8827279cfffb92266","latest"]}'
    VARY='{"jsonrpc":"2.0","id":1,"method":"eth_getBalance","params":["0x%040x","latest"]}' ;;
  *) die "METHOD: eth_getBalance, eth_blockNumber or eth_chainId" ;;
esac

cat >"$WORK/post.lua" <<EOF
-- POST one JSON-RPC call; count answers that are not HTTP 200 or carry a JSON-RPC error.
wrk.method = "POST"
wrk.body = '$BODY'
wrk.headers["Content-Type"] = "application/json"
local vary = '$VARY'
local counter = 0
if vary ~= "" then
  function request()
    counter = counter + 1
    return wrk.format(nil, nil, nil, string.format(vary, counter))
  end
end
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) rpc_errors = 0 end
function response(status, headers, body)
  if status ~= 200 or body:find('"error"', 1, true) or not body:find('"result"', 1, true) then
    rpc_errors = rpc_errors + 1
  end
end
function done(summary, latency, requests)
  local n = 0
  for _, t in ipairs(threads) do n = n + t:get("rpc_errors") end
  io.write(string.format("rpc_errors %d\n", n))
end
EOF

# CPU ticks (utime+stime) of a process and its children (nginx workers).
ticks() {
  local total=0 p
  for p in "$1" $(pgrep -P "$1" || true); do
    [ -r "/proc/$p/stat" ] || continue
    # Fields after the command (which may hold spaces): utime is the 12th, stime the 13th.
    total=$((total + $(sed 's/.*) //' "/proc/$p/stat" | awk '{print $12 + $13}')))
  done
  echo "$total"
}

# Peak RSS in MiB of a process and its children.
peak_rss() {
  local kb=0 p v
  for p in "$1" $(pgrep -P "$1" || true); do
    v="$(awk '/^VmHWM:/ {print $2}' "/proc/$p/status" 2>/dev/null || echo 0)"
    kb=$((kb + ${v:-0}))
  done
  awk -v kb="$kb" 'BEGIN { printf "%.1f", kb / 1024 }'
}

# wrk's latency ("123.45us", "1.23ms", "2.00s") in milliseconds.
to_ms() {
  awk -v v="$1" 'BEGIN {
    if (v ~ /us$/) { sub(/us$/, "", v); printf "%.3f", v / 1000 }
    else if (v ~ /ms$/) { sub(/ms$/, "", v); printf "%.3f", v }
    else if (v ~ /m$/) { sub(/m$/, "", v); printf "%.3f", v * 60000 }
    else if (v ~ /s$/) { sub(/s$/, "", v); printf "%.3f", v * 1000 }
    else printf "?" }'
}

ROWS=()
# proxy_cost PID TICKS_BEFORE TICKS_AFTER REQUESTS: sets CPU_US (per request) and RSS (peak);
# "-" for both when PID is "-" (no proxy).
proxy_cost() {
  if [ "$1" = "-" ]; then
    CPU_US="-"; RSS="-"
  else
    CPU_US="$(awk -v t=$(($3 - $2)) -v hz="$TICKS" -v n="$4" \
      'BEGIN { printf "%.1f", (n > 0 ? t / hz / n * 1e6 : 0) }')"
    RSS="$(peak_rss "$1")"
  fi
}

# run LABEL URL PID CONNECTIONS [SECONDS]: one wrk run; appends a row, sets RPS, CPU_US, RSS.
run() {
  local label="$1" url="$2" pid="$3" conns="$4" secs="${5:-$DURATION}" out="$WORK/wrk-$1.txt"
  say "$label: wrk -t$WRK_THREADS -c$conns -d${secs}s --latency $url"
  local before; before="$(ticks "$pid")"
  wrk -t"$WRK_THREADS" -c"$conns" -d"${secs}s" --latency -s "$WORK/post.lua" "$url" >"$out" 2>&1 ||
    die "wrk failed: $(cat "$out")"
  local after; after="$(ticks "$pid")"
  local requests p50 p99 errors sock
  requests="$(awk '/requests in/ {print $1}' "$out")"
  RPS="$(awk '/^Requests\/sec:/ {printf "%.0f", $2}' "$out")"
  p50="$(to_ms "$(awk '$1 == "50%" {print $2}' "$out")")"
  p99="$(to_ms "$(awk '$1 == "99%" {print $2}' "$out")")"
  errors="$(awk '/^rpc_errors/ {print $2}' "$out")"
  # "Socket errors: connect 0, read 0, write 0, timeout 0" (timeout: no answer in 2 s)
  sock="$(awk '/Socket errors/ {gsub(",", ""); print $4 + $6 + $8 + $10}' "$out")"
  sed 's/^/   | /' "$out" >&2
  proxy_cost "$pid" "$before" "$after" "$requests"
  ROWS+=("$label|$conns|$secs|$RPS|$p50|$p99|${errors:-?}|${sock:-0}|$CPU_US|$RSS")
  P50="$p50" P99="$p99" ERRORS="$(( ${errors:-0} + ${sock:-0} ))"
}

# run_calls LABEL URL PID CONNECTIONS: one call_load run (eth_getBalance, a new account each
# call); appends a row like `run`'s, sets RPS and CPU_US.
run_calls() {
  local label="$1" url="$2" pid="$3" conns="$4" out="$WORK/calls-$1.txt"
  say "$label: call_load $url $conns ${DURATION}s"
  local before; before="$(ticks "$pid")"
  "$CALL_LOAD" "$url" "$conns" "$DURATION" >"$out" 2>&1 || die "call_load failed: $(cat "$out")"
  local after; after="$(ticks "$pid")"
  local requests; requests="$(awk '$1 == "requests" {print $2}' "$out")"
  RPS="$(awk '$1 == "rps" {print $2}' "$out")"
  sed 's/^/   | /' "$out" >&2
  proxy_cost "$pid" "$before" "$after" "$requests"
  ROWS+=("$label|$conns|$DURATION|$RPS|$(awk '$1 == "p50_ms" {print $2}' "$out")|$(awk '$1 == "p99_ms" {print $2}' "$out")|$(awk '$1 == "errors" {print $2}' "$out")|-|$CPU_US|$RSS")
}

# ---------------------------------------------------------------------------------------
# the runs

say "upstream, nginx and manifold on 127.0.0.1; $DURATION s per run, $METHOD"
start_upstream fixed
FIXED="$UP_PORT"

if want compare; then
run direct "http://127.0.0.1:$FIXED/" - "$CONNECTIONS"
DIRECT_P50="$P50"

start_nginx "$FIXED"
run nginx "http://127.0.0.1:$NGINX_PORT/" "$NGINX_PID" "$CONNECTIONS"
NGINX_RPS="$RPS" NGINX_CPU="$CPU_US" NGINX_RSS="$RSS"
run nginx-c$MANY "http://127.0.0.1:$NGINX_PORT/" "$NGINX_PID" "$MANY"
stop "$NGINX_PID"

start_manifold single "$FIXED"
run manifold "http://127.0.0.1:$MF_PORT/" "$MF_PID" "$CONNECTIONS"
MF_RPS="$RPS" MF_CPU="$CPU_US" MF_RSS="$RSS" MF_P50="$P50" MF_P99="$P99"
run manifold-c$MANY "http://127.0.0.1:$MF_PORT/" "$MF_PID" "$MANY"
MF_MANY_RSS="$RSS"
stop "$MF_PID"
fi

# Three upstreams, the third hangs BLACKHOLE_AT s into the run.
if want blackhole; then
start_upstream a; A="$UP_PORT"
start_upstream b; B="$UP_PORT"
start_upstream c; C="$UP_PORT"; C_PID="$UP_PID"
start_manifold blackhole "$A" "$B" "$C"
( sleep "$BLACKHOLE_AT"; kill -USR1 "$C_PID" ) &
PIDS+=("$!")
# Calls answered in each second of the run, and attempts waiting on u2: a stall shows here.
(
  last=0
  for ((t = 1; t <= BLACKHOLE_DURATION; t++)); do
    sleep 1
    m="$(curl -sf "http://127.0.0.1:$MF_ADMIN/metrics" || true)"
    n="$(awk '/^manifold_requests_total/ {s += $NF} END {printf "%d", s}' <<<"$m")"
    w="$(awk '/^manifold_upstream_in_flight.*"u2"/ {printf "%d", $NF}' <<<"$m")"
    printf '%s:%s/%s ' "$t" "$((n - last))" "${w:-?}"
    last="$n"
  done >"$WORK/progress"
) &
PIDS+=("$!")
run manifold-blackhole "http://127.0.0.1:$MF_PORT/" "$MF_PID" "$CONNECTIONS" "$BLACKHOLE_DURATION"
BH_P99="$P99" BH_ERRORS="$ERRORS"
HEDGE_LINES="$(curl -sf "http://127.0.0.1:$MF_ADMIN/metrics" | grep -E '^manifold_(hedges|retries)_total' || true)"
OUTCOMES="$(curl -sf "http://127.0.0.1:$MF_ADMIN/metrics" | grep -E '^manifold_requests_total' || true)"
UP_OUTCOMES="$(curl -sf "http://127.0.0.1:$MF_ADMIN/metrics" | grep -E '^manifold_upstream_requests_total' | grep -v ' 0$' || true)"
C_STATUS="$(curl -sf "http://127.0.0.1:$MF_ADMIN/status" | tr -d '\n' | grep -o '"name":"u2"[^}]*' | head -1 || true)"
C_LOG="$(grep -E 'u2' "$WORK/blackhole.log" | grep -v 'serving chain' | cut -c1-240 || true)"
fi

# Calls over WebSocket against HTTP, one client for both.
if want ws; then
run_calls direct-calls "http://127.0.0.1:$FIXED/" - "$CONNECTIONS"
start_manifold ws "$FIXED"
run_calls manifold-http-calls "http://127.0.0.1:$MF_PORT/eth" "$MF_PID" "$CONNECTIONS"
WSH_RPS="$RPS" WSH_CPU="$CPU_US"
run_calls manifold-ws-calls "ws://127.0.0.1:$MF_PORT/eth" "$MF_PID" "$CONNECTIONS"
WSW_RPS="$RPS" WSW_CPU="$CPU_US"
stop "$MF_PID"
fi

# ---------------------------------------------------------------------------------------
# summary

echo
echo "machine: $(nproc) cores, $(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)"
echo "load: wrk -t$WRK_THREADS -d${DURATION}s --latency, POST $METHOD; c = connections"
echo
{
  echo "run|c|s|req/s|p50 ms|p99 ms|rpc errors|socket errors|proxy CPU us/req|proxy peak RSS MiB"
  printf '%s\n' "${ROWS[@]}"
} | column -t -s '|'
echo
want compare && awk -v mr="$MF_RPS" -v nr="$NGINX_RPS" -v mc="$MF_CPU" -v nc="$NGINX_CPU" -v mm="$MF_RSS" -v nm="$NGINX_RSS" 'BEGIN {
  printf "manifold/nginx at c=%s: req/s %.2f, CPU per request %.2f, peak RSS %.2f\n", "'"$CONNECTIONS"'",
    mr / nr, (nc > 0 ? mc / nc : 0), (nm > 0 ? mm / nm : 0) }'
want ws && awk -v hr="$WSH_RPS" -v wr="$WSW_RPS" -v hc="$WSH_CPU" -v wc="$WSW_CPU" 'BEGIN {
  printf "manifold ws/http at c=%s (call_load): req/s %.2f, CPU per request %.2f\n", "'"$CONNECTIONS"'",
    wr / hr, (hc > 0 ? wc / hc : 0) }'
# The issue's targets, each against this run's own figures.
if want compare; then
  echo
  echo "targets:"
  awk -v mr="$MF_RPS" -v nr="$NGINX_RPS" -v mc="$MF_CPU" -v nc="$NGINX_CPU" \
    -v mp="$MF_P50" -v dp="$DIRECT_P50" -v rss="$MF_MANY_RSS" -v many="$MANY" 'BEGIN {
    ok = "met"; no = "NOT met"
    printf "  req/s >= nginx:                 %.2fx  %s\n", mr / nr, (mr >= nr ? ok : no)
    printf "  CPU per request <= nginx:       %.2fx  %s\n", mc / nc, (mc <= nc ? ok : no)
    printf "  added p50 <= 0.1 ms:            %.3f ms  %s\n", mp - dp, (mp - dp <= 0.1 ? ok : no)
    printf "  RSS at c=%s <= 40 MB:         %.1f MB  %s\n", many, rss * 1.048576, (rss * 1.048576 <= 40 ? ok : no) }'
  if want blackhole; then
    # The auto hedge delay is the hung upstream's own p95, at least 20 ms (AUTO_MIN).
    awk -v bp="$BH_P99" -v mp="$MF_P99" -v be="$BH_ERRORS" 'BEGIN {
      t = 20 + 2 * mp
      printf "  one hung: p99 <= 20 ms + 2 x %.1f ms = %.1f ms, no errors:  %.1f ms, %d errors  %s\n",
        mp, t, bp, be, (bp <= t && be == 0 ? "met" : "NOT met") }'
  fi
fi
want blackhole || exit 0
echo
echo "blackhole run (u2 hangs at ${BLACKHOLE_AT}s; hedging auto, max_extra 1):"
sleep 1.5
printf '%s\n' "$HEDGE_LINES" "$OUTCOMES" "$UP_OUTCOMES" "u2 at the end: $C_STATUS" \
  "second:calls answered/attempts waiting on u2: $(cat "$WORK/progress" 2>/dev/null)" "log:" "$C_LOG" |
  sed 's/^/  /'
