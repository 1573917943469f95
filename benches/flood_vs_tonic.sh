#!/usr/bin/env bash
# h2load's flood of connections, each call sent again as soon as it is
# answered, against the service and against a minimal tonic server
# (examples/check_baseline.rs) in turn: what any tonic server gets on this
# machine from clients that never wait, beside what the service gets.
#
#   bash benches/flood_vs_tonic.sh       # needs h2load (Debian: nghttp2-client)
#   CONNECTIONS=1000 STREAMS=4 DURATION=15 ROUNDS=3 bash benches/flood_vs_tonic.sh
#   PROFILE=dist bash benches/flood_vs_tonic.sh   # the Docker image's build
#
# Each round starts a fresh baseline (port 19090), floods it with h2load
# (CONNECTIONS x STREAMS concurrent CheckInventory calls over HTTP/2
# cleartext for DURATION seconds after a 2 s warm-up, one framed message on
# one product), stops it, then does the same with a fresh service (18083 /
# 19083, a throwaway SQLite file, the shipped limits and cache). Prints for
# each flood the answers a second, the latency of every answer (from
# h2load's log of each request), the service's calls shed (h2load sees a
# gRPC refusal as an answer: HTTP 200, grpc-status in the trailers; with
# none shed, every answer was a call served) and the process's resident
# memory: idle and at its peak (VmHWM). Only loopback is touched.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source benches/lib.sh

CONNECTIONS="${CONNECTIONS:-1000}"
STREAMS="${STREAMS:-4}"
DURATION="${DURATION:-15}"
ROUNDS="${ROUNDS:-3}"
PROFILE="${PROFILE:-release}"
GRPC_PORT=19083
HTTP_PORT=18083
BASELINE_PORT=19090

command -v h2load >/dev/null || { echo "h2load missing: apt-get install nghttp2-client" >&2; exit 1; }
cargo build --profile "$PROFILE" --quiet --bin inventory-service --example check_baseline
bin="${CARGO_TARGET_DIR:-target}/$PROFILE"
# h2load needs a descriptor per connection.
ulimit -n "$(ulimit -Hn)"
work="$(mktemp -d)"
pid=
trap '[[ -n "$pid" ]] && kill "$pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"' EXIT

write_check_frame "$work/check.bin"

start_baseline() {
  "$bin/examples/check_baseline" "127.0.0.1:$BASELINE_PORT" >/dev/null 2>&1 &
  pid=$!
  for _ in $(seq 1 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$BASELINE_PORT") 2>/dev/null && return
    sleep 0.1
  done
  echo "the baseline did not start (is port $BASELINE_PORT in use?)" >&2
  exit 1
}
start_service() {
  rm -f "$work"/bench.db*
  INVENTORY_DATABASE__DSN="$work/bench.db" \
  INVENTORY_DATABASE__SYNCHRONOUS=normal \
  INVENTORY_SERVER__GRPC_PORT=$GRPC_PORT \
  INVENTORY_SERVER__HTTP_PORT=$HTTP_PORT \
  INVENTORY_SERVER__HOST=127.0.0.1 \
  INVENTORY_LOGGING__LEVEL=warn \
  INVENTORY_INVENTORY__INITIAL_STOCK='{bench-product=1000}' \
    "$bin/inventory-service" --config config/config.yaml &
  pid=$!
  wait_for_service "$pid" "$HTTP_PORT"
}
stop() { kill "$pid"; wait "$pid" 2>/dev/null || true; pid=; }
rss() { awk -v k="$1:" '$1 == k { printf "%.1f", $2 / 1024 }' "/proc/$pid/status"; }

# Floods port $1 and prints one line: answers/s, latency quantiles, memory.
flood() {
  local port=$1 name=$2 idle rate
  require_check_answers "$port" "$work/check.bin"
  idle="$(rss VmRSS)"
  rm -f "$work/log"
  rate="$(h2load -c "$CONNECTIONS" -m "$STREAMS" -D "$DURATION" --warm-up-time 2 \
    -d "$work/check.bin" -H 'content-type: application/grpc' -H 'te: trailers' \
    --log-file "$work/log" "http://127.0.0.1:$port/inventory.v1.InventoryService/CheckInventory" |
    sed -n 's/^finished in .*, \([0-9.]*\) req\/s.*/\1/p')"
  python3 - "$work/log" "$name" "$rate" "$idle" "$(rss VmHWM)" <<'PY'
import sys
log, name, rate, idle, peak = sys.argv[1:]
# h2load's log: start (us since the epoch), HTTP status, duration (us).
d = sorted(int(line.split()[2]) for line in open(log) if line.split()[1] == "200")
other = sum(1 for line in open(log) if line.split()[1] != "200")
q = lambda p: d[min(len(d) - 1, int(p * len(d)))] / 1000
print(f"{name}: {float(rate):,.0f} answers/s, latency p50 {q(.5):.1f} p90 {q(.9):.1f} "
      f"p99 {q(.99):.1f} max {d[-1] / 1000:.1f} ms, {other} not HTTP 200; "
      f"resident {idle} MiB idle, {peak} MiB peak")
PY
}

echo "== $CONNECTIONS connections x $STREAMS calls, ${DURATION} s, $PROFILE"
for round in $(seq 1 "$ROUNDS"); do
  echo "-- round $round"
  start_baseline
  flood "$BASELINE_PORT" "baseline"
  stop
  start_service
  flood "$GRPC_PORT" "service "
  echo "service: shed $(shed_total "$HTTP_PORT") calls"
  stop
done
