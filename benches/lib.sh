# Shared by benches/load.sh and benches/soak.sh (sourced): process bookkeeping and helpers.
# Expects WORK (a scratch directory) to be set; everything appended to PIDS is killed on exit.

PIDS=()
cleanup() {
  local p
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  sleep 0.2
  for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# A port no socket uses (checked, not reserved: good enough on a quiet machine), below the
# kernel's ephemeral range, which the load's own connections fill.
free_port() {
  local p low
  low="$(awk '{print $1}' /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)"
  while :; do
    p=$((10000 + RANDOM % (low - 10000)))
    if [ -z "$(ss -Htan "sport = :$p")" ]; then echo "$p"; return; fi
  done
}

wait_for() { # wait_for SECONDS CMD...: until CMD succeeds
  local until=$((SECONDS + $1)); shift
  until "$@" >/dev/null 2>&1; do
    [ "$SECONDS" -lt "$until" ] || return 1
    sleep 0.05
  done
}
