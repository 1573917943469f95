# Shared by the benchmark scripts (sourced, not run).

# Waits (up to 10 s) for the service started as process $1 to answer
# /health on HTTP port $2. Fails if it does not, or if that process is gone:
# another process on the port would answer in its place (and be measured).
wait_for_service() {
  for _ in $(seq 1 100); do
    if curl -sf "http://127.0.0.1:$2/health" >/dev/null; then
      kill -0 "$1" 2>/dev/null && return
      break
    fi
    sleep 0.1
  done
  echo "the service did not start (is port $2 or its gRPC port in use?)" >&2
  exit 1
}

# Calls the service on HTTP port $1 has shed for load since it started
# (inventory_requests_shed_total, summed over its reasons).
shed_total() {
  curl -s "http://127.0.0.1:$1/metrics" | awk '/^inventory_requests_shed_total/ { n += $2 } END { print n + 0 }'
}

# Fails when the service on HTTP port $1 shed any call: h2load counts a gRPC
# refusal (HTTP 200, grpc-status in the trailers) as an answer, so a shed
# call would pass for a fast one.
require_nothing_shed() {
  local shed
  shed="$(shed_total "$1")"
  if [[ "$shed" != 0 ]]; then
    echo "the service shed $shed calls: the rates count refusals; raise server.max_in_flight or lower CLIENTS x STREAMS" >&2
    exit 1
  fi
}

# Writes to file $1 one gRPC frame (flag 0, big-endian length) holding the
# CheckInventoryRequest {product_id: "bench-product" (field 1),
# required_quantity: 1 (field 2)}: the body h2load sends.
write_check_frame() {
  python3 - "$1" <<'PY'
import struct, sys
pid = b"bench-product"
msg = bytes([0x0A, len(pid)]) + pid + bytes([0x10, 0x01])
open(sys.argv[1], "wb").write(b"\x00" + struct.pack(">I", len(msg)) + msg)
PY
}

# Fails unless the gRPC server on port $1 answers one CheckInventory of the
# frame in file $2: the answers must be right before they are fast.
require_check_answers() {
  h2load -n 1 -c 1 -d "$2" -H 'content-type: application/grpc' -H 'te: trailers' \
    "http://127.0.0.1:$1/inventory.v1.InventoryService/CheckInventory" | grep -q "1 succeeded" \
    || { echo "CheckInventory on port $1 failed" >&2; exit 1; }
}
