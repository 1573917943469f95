# Shared by the benchmark scripts (sourced, not run).

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
