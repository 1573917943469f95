#!/usr/bin/env bash
# A flood of connections and calls against the service's limits: the
# latency of the calls it serves, what it sheds, its memory, and how it is
# right after.
#
#   bash benches/overload.sh
#   CONNECTIONS=1000 STREAMS=4 DURATION=15s bash benches/overload.sh
#   PIN=1 bash benches/overload.sh    # service on CPU 0, load generator on CPU 1
#   BACKOFF=1 bash benches/overload.sh  # flood clients honour retry-after
#   MAX_IN_FLIGHT=256 bash benches/overload.sh  # another limit
#   MAX_QUEUE_WAIT=20ms bash benches/overload.sh  # another burst wait
#   BACKEND=postgres bash benches/overload.sh  # PostgreSQL on 127.0.0.1:5432
#   PROFILE=dist bash benches/overload.sh  # the Docker image's build (LTO)
#
# Builds the binaries (release, or PROFILE), starts the service on loopback (18083/19083,
# a throwaway SQLite file, synchronous: normal, or with BACKEND=postgres a
# throwaway database inventory_overload, dropped at the end; the shipped limits:
# max_in_flight 64, max_queued 1024, max_queue_wait 1s, standing_queue_after
# 20ms; MAX_IN_FLIGHT and MAX_QUEUE_WAIT override theirs) and runs
# inventory-load three times with a mix of 80% checks and 20% reservations
# over 1,000 products:
#   before: 16 clients on 4 connections (the service at ease);
#   flood:  CONNECTIONS connections x STREAMS concurrent calls each;
#   after:  16 clients again, at once (does it recover?).
# Prints each run's report (the flood's "served (not shed)" latency is the
# one that counts), the calls shed, and the service's resident memory
# before, at its peak (VmHWM) and after (split into anonymous, the heap and
# stacks, and file-backed, the binary's pages). The load generator shares the 2
# cores with the service, so absolute rates are low; compare the runs.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source benches/lib.sh

CONNECTIONS="${CONNECTIONS:-1000}"
STREAMS="${STREAMS:-4}"
DURATION="${DURATION:-15s}"
PIN="${PIN:-0}"
BACKOFF="${BACKOFF:-0}"
MAX_IN_FLIGHT="${MAX_IN_FLIGHT:-64}"
MAX_QUEUE_WAIT="${MAX_QUEUE_WAIT:-1s}"
BACKEND="${BACKEND:-sqlite}"
PG="postgres://postgres@127.0.0.1:5432"
DB=inventory_overload
flood_args=()
if [[ "$BACKOFF" == 1 ]]; then flood_args=(--backoff); fi
service_cpu=() load_cpu=()
if [[ "$PIN" == 1 ]]; then service_cpu=(taskset -c 0) load_cpu=(taskset -c 1); fi
GRPC_PORT=19083
HTTP_PORT=18083
MIX="check=80,reserve=20"

PROFILE="${PROFILE:-release}"
cargo build --profile "$PROFILE" --quiet --bin inventory-service --bin inventory-load
bin="${CARGO_TARGET_DIR:-target}/$PROFILE"
work="$(mktemp -d)"
server=
cleanup() {
  [[ -n "$server" ]] && { kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; }
  if [[ "$BACKEND" == postgres ]]; then
    psql -q "$PG/postgres" -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT
case "$BACKEND" in
  sqlite) driver=sqlite dsn="$work/bench.db" ;;
  postgres)
    psql -q "$PG/postgres" -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" -c "CREATE DATABASE $DB"
    driver=postgres dsn="$PG/$DB" ;;
  *) echo "BACKEND is sqlite or postgres" >&2; exit 1 ;;
esac

INVENTORY_DATABASE__DRIVER="$driver" \
INVENTORY_DATABASE__DSN="$dsn" \
INVENTORY_DATABASE__SYNCHRONOUS=normal \
INVENTORY_SERVER__GRPC_PORT=$GRPC_PORT \
INVENTORY_SERVER__HTTP_PORT=$HTTP_PORT \
INVENTORY_SERVER__HOST=127.0.0.1 \
INVENTORY_SERVER__MAX_IN_FLIGHT="$MAX_IN_FLIGHT" \
INVENTORY_SERVER__MAX_QUEUE_WAIT="$MAX_QUEUE_WAIT" \
INVENTORY_LOGGING__LEVEL=warn \
  "${service_cpu[@]}" "$bin/inventory-service" --config config/config.yaml &
server=$!
wait_for_service "$server" "$HTTP_PORT"

rss() { awk -v k="$1:" '$1 == k { print $2 / 1024 " MiB" }' "/proc/$server/status"; }
# Resident memory now, by kind: heap and stacks (anonymous), the binary's
# pages and mapped files (file).
rss_kinds() {
  awk '$1 == "RssAnon:" { a = $2 } $1 == "RssFile:" { f = $2 }
    END { printf "anonymous %.1f MiB, file %.1f MiB\n", a / 1024, f / 1024 }' "/proc/$server/status"
}
# The service's own histogram of the calls it served (every code but
# RESOURCE_EXHAUSTED), summed by bucket: "le count" lines.
served_buckets() {
  curl -s "http://127.0.0.1:$HTTP_PORT/metrics" | awk '
    /^inventory_request_duration_seconds_bucket/ && !/code="RESOURCE_EXHAUSTED"/ {
      match($0, /le="[^"]*"/); le = substr($0, RSTART + 4, RLENGTH - 5); n[le] += $2
    }
    END { for (le in n) print le, n[le] }' | sort -g
}
# p50 and p99 of the calls served between two snapshots, as the upper bound
# of the bucket they fall in (the service measures from the moment a call
# reaches its stack to its answer; the client's figure adds the network, the
# HTTP/2 connection's own queue and the client's scheduling).
server_quantiles() {
  join <(echo "$1") <(echo "$2") | awk '
    { le[NR] = $1; n[NR] = $3 - $2 } END {
      total = n[NR]; out = "";
      split("0.5 0.99", qs, " ");
      for (q in qs) for (i = 1; i <= NR; i++) if (n[i] >= qs[q] * total) {
        out = out sprintf("p%s <= %s ms  ", qs[q] * 100, le[i] == "+Inf" ? "inf" : le[i] * 1000); break }
      print "served, by the service'"'"'s own histogram (" total " calls): " out }'
}
load() {
  "${load_cpu[@]}" "$bin/inventory-load" --grpc "http://127.0.0.1:$GRPC_PORT" --prefix overload \
    --products 1000 --mix "$MIX" --no-verify "$@"
}

echo "== setup"
load --concurrency 4 --requests 1 >/dev/null
echo "rss before: $(rss VmRSS)"
echo "== before: 16 clients"
load --no-setup --concurrency 16 --connections 4 --duration 10s
echo "rss after the first run: $(rss VmRSS) ($(rss_kinds))"
echo "== flood: $CONNECTIONS connections x $STREAMS calls"
before_flood="$(served_buckets)"
load --no-setup --concurrency $((CONNECTIONS * STREAMS)) --connections "$CONNECTIONS" --duration "$DURATION" "${flood_args[@]}"
server_quantiles "$before_flood" "$(served_buckets)"
echo "shed in all: $(shed_total "$HTTP_PORT")"
echo "rss peak: $(rss VmHWM), now: $(rss VmRSS) ($(rss_kinds))"
echo "== after: 16 clients"
load --no-setup --concurrency 16 --connections 4 --duration 10s
echo "rss after: $(rss VmRSS)"
