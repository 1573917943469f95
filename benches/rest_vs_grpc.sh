#!/usr/bin/env bash
# REST/JSON against native gRPC on CheckInventory, through the same handler.
#
#   bash benches/rest_vs_grpc.sh            # needs h2load (Debian: nghttp2-client)
#
# Builds the release binary, starts it on loopback ports 18083/19083 with a
# throwaway SQLite file, stocks one product, then drives the same read with
# h2load at the same concurrency over HTTP/2 (cleartext): gRPC as POST
# /inventory.v1.InventoryService/CheckInventory with one framed message, REST
# as GET /api/v1/inventory/bench-product, in ROUNDS alternating rounds.
# Prints each round and the medians' REST/gRPC ratio. Only loopback is
# touched; the server stops at the end.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

REQUESTS="${REQUESTS:-100000}"
ROUNDS="${ROUNDS:-5}"
CLIENTS="${CLIENTS:-16}"
STREAMS="${STREAMS:-16}"
GRPC_PORT=19083
HTTP_PORT=18083

command -v h2load >/dev/null || { echo "h2load missing: apt-get install nghttp2-client" >&2; exit 1; }
cargo build --release --quiet
work="$(mktemp -d)"
trap 'kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; rm -rf "$work"' EXIT

INVENTORY_DATABASE__DSN="$work/bench.db" \
INVENTORY_DATABASE__SYNCHRONOUS=normal \
INVENTORY_SERVER__GRPC_PORT=$GRPC_PORT \
INVENTORY_SERVER__HTTP_PORT=$HTTP_PORT \
INVENTORY_SERVER__HOST=127.0.0.1 \
INVENTORY_LOGGING__LEVEL=warn \
INVENTORY_INVENTORY__INITIAL_STOCK='{bench-product=1000}' \
  "${CARGO_TARGET_DIR:-target}/release/inventory-service" --config config/config.yaml &
server=$!
for _ in $(seq 1 50); do
  curl -sf "http://127.0.0.1:$HTTP_PORT/health" >/dev/null && break
  sleep 0.1
done
curl -sf "http://127.0.0.1:$HTTP_PORT/api/v1/inventory/bench-product" >/dev/null

# One gRPC frame: flag 0, big-endian length, then CheckInventoryRequest
# {product_id: "bench-product" (field 1), required_quantity: 1 (field 2)}.
python3 - "$work/check.bin" <<'PY'
import struct, sys
pid = b"bench-product"
msg = bytes([0x0A, len(pid)]) + pid + bytes([0x10, 0x01])
open(sys.argv[1], "wb").write(b"\x00" + struct.pack(">I", len(msg)) + msg)
PY

run() { h2load -n "$REQUESTS" -c "$CLIENTS" -m "$STREAMS" "$@" | sed -n 's/^finished in .*, \([0-9.]*\) req\/s.*/\1/p'; }
# Rounds alternate gRPC and REST so drift on a shared machine hits both; the
# medians are compared.
grpc=(); rest=()
for round in $(seq 1 "$ROUNDS"); do
  grpc+=("$(run -d "$work/check.bin" -H 'content-type: application/grpc' -H 'te: trailers' \
    "http://127.0.0.1:$GRPC_PORT/inventory.v1.InventoryService/CheckInventory")")
  rest+=("$(run "http://127.0.0.1:$HTTP_PORT/api/v1/inventory/bench-product")")
  echo "round $round: gRPC ${grpc[-1]} req/s, REST ${rest[-1]} req/s"
done
python3 - "${grpc[*]}" "${rest[*]}" <<'PY'
import statistics, sys
grpc = statistics.median(map(float, sys.argv[1].split()))
rest = statistics.median(map(float, sys.argv[2].split()))
print(f"median: gRPC {grpc:,.0f} req/s, REST {rest:,.0f} req/s, REST/gRPC = {rest / grpc:.1%}")
PY
