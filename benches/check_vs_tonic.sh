#!/usr/bin/env bash
# CheckInventory of one hot product: the service against a minimal tonic
# server answering the same message shape (examples/check_baseline.rs), and
# the service's REST/JSON against its own gRPC.
#
#   bash benches/check_vs_tonic.sh          # needs h2load (Debian: nghttp2-client)
#   CACHE=off bash benches/check_vs_tonic.sh   # the service without its cache
#
# Builds the release binary and the baseline, starts both on loopback (the
# service on 18083/19083 with a throwaway SQLite file and the memory cache,
# the baseline on 19090), stocks one product and warms the cache, then
# drives the same read with h2load at the same concurrency over HTTP/2
# (cleartext): gRPC as POST /inventory.v1.InventoryService/CheckInventory
# with one framed message, REST as GET /api/v1/inventory/bench-product. In
# ROUNDS rounds, each runs baseline gRPC, service gRPC and service REST in
# turn. Prints each round, the medians, service/baseline and REST/gRPC.
# Only loopback is touched; both servers stop at the end.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source benches/lib.sh

REQUESTS="${REQUESTS:-100000}"
ROUNDS="${ROUNDS:-5}"
CLIENTS="${CLIENTS:-16}"
STREAMS="${STREAMS:-16}"
GRPC_PORT=19083
HTTP_PORT=18083
BASELINE_PORT=19090
CACHE="${CACHE:-memory}"

command -v h2load >/dev/null || { echo "h2load missing: apt-get install nghttp2-client" >&2; exit 1; }
cargo build --release --quiet --bin inventory-service --example check_baseline
work="$(mktemp -d)"
trap 'kill "$server" "$baseline" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT

"${CARGO_TARGET_DIR:-target}/release/examples/check_baseline" "127.0.0.1:$BASELINE_PORT" &
baseline=$!
cache_enabled=true
[[ "$CACHE" == off ]] && cache_enabled=false

INVENTORY_DATABASE__DSN="$work/bench.db" \
INVENTORY_DATABASE__SYNCHRONOUS=normal \
INVENTORY_SERVER__GRPC_PORT=$GRPC_PORT \
INVENTORY_SERVER__HTTP_PORT=$HTTP_PORT \
INVENTORY_SERVER__HOST=127.0.0.1 \
INVENTORY_LOGGING__LEVEL=warn \
INVENTORY_CACHE__ENABLED=$cache_enabled \
INVENTORY_INVENTORY__INITIAL_STOCK='{bench-product=1000}' \
  "${CARGO_TARGET_DIR:-target}/release/inventory-service" --config config/config.yaml &
server=$!
wait_for_service "$server" "$HTTP_PORT"
curl -sf "http://127.0.0.1:$HTTP_PORT/api/v1/inventory/bench-product" >/dev/null

write_check_frame "$work/check.bin"

run() { h2load -n "$REQUESTS" -c "$CLIENTS" -m "$STREAMS" "$@" | sed -n 's/^finished in .*, \([0-9.]*\) req\/s.*/\1/p'; }
grpc_call() {
  run -d "$work/check.bin" -H 'content-type: application/grpc' -H 'te: trailers' \
    "http://127.0.0.1:$1/inventory.v1.InventoryService/CheckInventory"
}
require_check_answers "$BASELINE_PORT" "$work/check.bin"
require_check_answers "$GRPC_PORT" "$work/check.bin"
# Warm-up: connections, the cache, the allocator.
grpc_call "$GRPC_PORT" >/dev/null
grpc_call "$BASELINE_PORT" >/dev/null

# Rounds alternate the three so drift on a shared machine hits each; the
# medians are compared.
base=(); grpc=(); rest=()
for round in $(seq 1 "$ROUNDS"); do
  base+=("$(grpc_call "$BASELINE_PORT")")
  grpc+=("$(grpc_call "$GRPC_PORT")")
  rest+=("$(run "http://127.0.0.1:$HTTP_PORT/api/v1/inventory/bench-product")")
  echo "round $round: baseline ${base[-1]} req/s, gRPC ${grpc[-1]} req/s, REST ${rest[-1]} req/s"
done
require_nothing_shed "$HTTP_PORT"
python3 - "${base[*]}" "${grpc[*]}" "${rest[*]}" "$CACHE" <<'PY'
import statistics, sys
base, grpc, rest = (statistics.median(map(float, a.split())) for a in sys.argv[1:4])
print(f"median (cache {sys.argv[4]}): baseline {base:,.0f} req/s, gRPC {grpc:,.0f} req/s, "
      f"REST {rest:,.0f} req/s; gRPC/baseline = {grpc / base:.2f}, REST/gRPC = {rest / grpc:.2f}")
PY
