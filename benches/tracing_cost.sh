#!/usr/bin/env bash
# The cost of tracing: the same load with tracing disabled, then with every
# request traced (sampling_rate 1.0) and exported over OTLP/gRPC to a local
# no-op receiver (examples/otlp_sink.rs).
#
#   bash benches/tracing_cost.sh            # needs h2load (Debian: nghttp2-client)
#
# Builds the release binary and the sink, starts the service on loopback
# ports 18083/19083 with a throwaway SQLite file (and room for every call
# h2load keeps open: this measures tracing, not shedding), and drives two workloads
# with h2load over HTTP/2 cleartext for each setting: gRPC CheckInventory (a
# read: server, business and one statement span) and gRPC ReserveInventory
# (a write transaction: server, business, transaction and four statement
# spans: BEGIN, two SELECTs, COMMIT). Prints requests per second, the
# traced/untraced ratio, and the spans the sink received beside those the
# service counted as exported and dropped (inventory_trace_spans_*_total).
# Only loopback is touched; everything stops at the end.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source benches/lib.sh

REQUESTS="${REQUESTS:-100000}"
WRITES="${WRITES:-20000}"
CLIENTS="${CLIENTS:-16}"
STREAMS="${STREAMS:-16}"
GRPC_PORT=19083
HTTP_PORT=18083
SINK=127.0.0.1:14317

command -v h2load >/dev/null || { echo "h2load missing: apt-get install nghttp2-client" >&2; exit 1; }
cargo build --release --quiet
cargo build --release --quiet --example otlp_sink
bin="${CARGO_TARGET_DIR:-target}/release"
work="$(mktemp -d)"
server=""
"$bin/examples/otlp_sink" "$SINK" > "$work/sink.txt" &
sink=$!
stop_server() { if [ -n "$server" ]; then kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; server=""; fi; }
trap 'stop_server; kill "$sink" 2>/dev/null || true; wait "$sink" 2>/dev/null || true; rm -rf "$work"' EXIT

# gRPC frames: flag 0, big-endian length, then the message.
python3 - "$work" <<'PY'
import struct, sys
def frame(msg): return b"\x00" + struct.pack(">I", len(msg)) + msg
def s(field, value): return bytes([field << 3 | 2, len(value)]) + value
def v(field, value): return bytes([field << 3, value])
pid = b"bench-product"
open(sys.argv[1] + "/check.bin", "wb").write(frame(s(1, pid) + v(2, 1)))
PY

start() { # $1: tracing enabled (true|false)
  rm -f "$work/bench.db"*
  INVENTORY_DATABASE__DSN="$work/bench.db" \
  INVENTORY_DATABASE__SYNCHRONOUS=normal \
  INVENTORY_SERVER__GRPC_PORT=$GRPC_PORT \
  INVENTORY_SERVER__HTTP_PORT=$HTTP_PORT \
  INVENTORY_SERVER__HOST=127.0.0.1 \
  INVENTORY_LOGGING__LEVEL=warn \
  INVENTORY_SERVER__MAX_IN_FLIGHT=$((CLIENTS * STREAMS)) \
  INVENTORY_TRACING__ENABLED="$1" \
  INVENTORY_TRACING__ENDPOINT="http://$SINK" \
  INVENTORY_TRACING__SAMPLING_RATE=1.0 \
  INVENTORY_INVENTORY__INITIAL_STOCK="{bench-product=100000000}" \
    "$bin/inventory-service" --config config/config.yaml > "$work/server.txt" 2>&1 &
  server=$!
  wait_for_service "$server" "$HTTP_PORT"
}

rps() { sed -n 's/^finished in .*, \([0-9.]*\) req\/s.*/\1/p'; }
reads() {
  h2load -n "$REQUESTS" -c "$CLIENTS" -m "$STREAMS" -d "$work/check.bin" \
    -H 'content-type: application/grpc' -H 'te: trailers' \
    "http://127.0.0.1:$GRPC_PORT/inventory.v1.InventoryService/CheckInventory" | rps
}
writes() {
  # h2load replays one body: the first request reserves, the others are
  # idempotent retries of the same order (a BEGIN IMMEDIATE transaction that
  # finds the reservation and reads the stock, then commits).
  python3 - "$work/reserve.bin" <<'PY'
import struct, sys, uuid
def s(field, value): return bytes([field << 3 | 2, len(value)]) + value
def v(field, value): return bytes([field << 3, value])
msg = s(1, b"bench-product") + v(2, 1) + s(3, uuid.uuid4().hex.encode()) + v(4, 60)
open(sys.argv[1], "wb").write(b"\x00" + struct.pack(">I", len(msg)) + msg)
PY
  h2load -n "$WRITES" -c "$CLIENTS" -m "$STREAMS" -d "$work/reserve.bin" \
    -H 'content-type: application/grpc' -H 'te: trailers' \
    "http://127.0.0.1:$GRPC_PORT/inventory.v1.InventoryService/ReserveInventory" | rps
}

declare -A result
for tracing in false true; do
  start "$tracing"
  reads >/dev/null   # warm-up
  result[read_$tracing]="$(reads)"
  result[write_$tracing]="$(writes)"
  require_nothing_shed "$HTTP_PORT"
  if [[ "$tracing" == true ]]; then
    sleep 6 # one export interval, so the queue drains before the count
    spans="$(curl -s "http://127.0.0.1:$HTTP_PORT/metrics" | awk '
      /^inventory_trace_spans_exported_total/ { e += $2 }
      /^inventory_trace_spans_dropped_total/ { d += $2 }
      END { printf "exported %d, dropped %d", e, d }')"
  fi
  stop_server
done
sleep 1.5
echo "spans exported to the sink: $(tail -n 1 "$work/sink.txt" | sed 's/[^0-9]//g') (the service counted: $spans)"

python3 - "${result[read_false]}" "${result[read_true]}" "${result[write_false]}" "${result[write_true]}" <<'PY'
import sys
r0, r1, w0, w1 = map(float, sys.argv[1:])
print(f"CheckInventory   (read):  untraced {r0:,.0f} req/s, traced {r1:,.0f} req/s, traced/untraced = {r1 / r0:.1%}")
print(f"ReserveInventory (write): untraced {w0:,.0f} req/s, traced {w1:,.0f} req/s, traced/untraced = {w1 / w0:.1%}")
PY
