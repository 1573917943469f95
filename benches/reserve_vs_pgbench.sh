#!/usr/bin/env bash
# Reservation throughput of the service on PostgreSQL against pgbench running
# the identical SQL, one reservation per transaction (benches/pgbench/reserve.sql),
# at the same concurrency: spread over 1,000 products and on one hot product,
# at 16 and 64 clients; then the service with group commit off, for
# comparison. pgbench runs twice: the reservation alone
# (benches/pgbench/reserve.sql) and with the stock event the service has
# written since its events outbox (reserve_with_event.sql). The service runs
# without its read cache: the stock is reset behind its back between runs,
# and the final check reads it back. Each figure is the median of ROUNDS
# runs (default 3), the
# service's and pgbench's alternating, since this machine's speed drifts from
# minute to minute. Prints each ratio, the service's p99 latency and its
# peak RSS.
#
#   bash benches/reserve_vs_pgbench.sh      # needs pgbench and the local PostgreSQL
#
# Uses a throwaway database inventory_bench on 127.0.0.1:5432 (user postgres),
# dropped at the end, and loopback ports 19083/18083. CLIENTS ("16 64"),
# RUN_SECONDS (10) and ROUNDS (3) override the defaults. The load generator
# (src/bin/inventory-load.rs) and pgbench run on the same machine.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source benches/lib.sh

CLIENT_COUNTS="${CLIENTS:-16 64}"
SECONDS_PER_RUN="${RUN_SECONDS:-10}"
ROUNDS="${ROUNDS:-3}"
PG="postgres://postgres@127.0.0.1:5432"
DB=inventory_bench
GRPC_PORT=19083
HTTP_PORT=18083

command -v pgbench >/dev/null || { echo "pgbench missing (Debian: postgresql-client)" >&2; exit 1; }
cargo build --release --quiet --bins
bin="${CARGO_TARGET_DIR:-target}/release"

psql -q "$PG/postgres" -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" -c "CREATE DATABASE $DB"
server=
stop_server() {
  [[ -n "$server" ]] && { kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; }
  server=
}
cleanup() {
  stop_server
  psql -q "$PG/postgres" -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" || true
}
trap cleanup EXIT

start_server() { # $1: group commit on (true) or off (false)
  INVENTORY_DATABASE__DRIVER=postgres \
  DATABASE_URL="$PG/$DB" \
  INVENTORY_DATABASE__MAX_CONNECTIONS=16 \
  INVENTORY_INVENTORY__BATCH__ENABLED="$1" \
  INVENTORY_CACHE__ENABLED=false \
  INVENTORY_SERVER__GRPC_PORT=$GRPC_PORT \
  INVENTORY_SERVER__HTTP_PORT=$HTTP_PORT \
  INVENTORY_SERVER__HOST=127.0.0.1 \
  INVENTORY_LOGGING__LEVEL=warn \
    "$bin/inventory-service" --config config/config.yaml >>/tmp/inventory-bench-service.log 2>&1 &
  server=$!
  wait_for_service "$server" "$HTTP_PORT"
}

stock() { # Fresh stock and no reservations before every run.
  psql -q "$PG/$DB" <<SQL
TRUNCATE inventory_history, inventory_reservations, inventory, idempotency_keys, inventory_events CASCADE;
INSERT INTO inventory (product_id, total_quantity)
  SELECT 'bench-' || g, 1000000000 FROM generate_series(1, 1000) g;
VACUUM ANALYZE;
SQL
}

service_run() { # $1 clients, $2 distribution; prints "tx/s p99_ms"
  local json
  json="$("$bin/inventory-load" --grpc "http://127.0.0.1:$GRPC_PORT" --no-setup --prefix bench \
    --products 1000 --distribution "$2" --concurrency "$1" --connections 4 \
    --duration "${SECONDS_PER_RUN}s" --mix reserve=100 --json)"
  python3 -c 'import json,sys; r=json.load(sys.stdin); assert not r["mismatches"], r["mismatches"]; print(round(r["ok"]/r["seconds"]), r["latency_ms"]["p99"])' <<<"$json"
}

pgbench_run() { # $1 clients, $2 products, $3 script (default reserve); prints tx/s
  pgbench -n -f "benches/pgbench/${3:-reserve}.sql" -D products="$2" -c "$1" -j 2 -T "$SECONDS_PER_RUN" "$PG/$DB" 2>&1 \
    | sed -n 's/^tps = \([0-9.]*\).*/\1/p' | head -n 1
}

peak_rss_mib() { awk '/VmHWM/ {printf "%.0f", $2/1024}' "/proc/$server/status"; }

median() { tr ' ' '\n' | sort -g | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }

compare() { # $1 clients, $2 products, $3 group commit label: one row of medians
  local clients="$1" products="$2" distribution=uniform services=() p99s=() pgbenches=() evented=()
  [[ "$products" == 1 ]] && distribution=hot
  for round in $(seq 1 "$ROUNDS"); do
    stock; read -r service p99 < <(service_run "$clients" "$distribution")
    stock; pgbench="$(pgbench_run "$clients" "$products")"
    stock; with_event="$(pgbench_run "$clients" "$products" reserve_with_event)"
    echo "  round $round, products $products, $clients clients, group commit $3:" \
      "service $service tx/s (p99 $p99 ms), pgbench $pgbench tx/s, with the event $with_event tx/s" >&2
    services+=("$service"); p99s+=("$p99"); pgbenches+=("$pgbench"); evented+=("$with_event")
  done
  echo "$products $clients $(echo "${services[*]}" | median) $(echo "${pgbenches[*]}" | median)" \
    "$(echo "${p99s[*]}" | median) $3 $(echo "${evented[*]}" | median)"
}

rows=()
start_server true
for clients in $CLIENT_COUNTS; do
  for products in 1000 1; do
    rows+=("$(compare "$clients" "$products" on)")
  done
done
rss="$(peak_rss_mib)"
stop_server

start_server false
for products in 1000 1; do
  rows+=("$(compare 16 "$products" off)")
done
stop_server

echo
echo "Medians of $ROUNDS rounds of ${SECONDS_PER_RUN} s:"
echo "| Products | Clients | Group commit | Service | pgbench | Service / pgbench | pgbench with the event | Service / that | Service p99 |"
echo "|---|---|---|---|---|---|---|---|---|"
for row in "${rows[@]}"; do
  read -r products clients service pgbench p99 batching with_event <<<"$row"
  python3 - "$products" "$clients" "$service" "$pgbench" "$p99" "$batching" "$with_event" <<'PY'
import sys
products, clients, service, pgbench, p99, batching, with_event = sys.argv[1:]
service, pgbench, with_event = float(service), float(pgbench), float(with_event)
label = "1 (hot)" if products == "1" else f"{int(products):,}"
print(f"| {label} | {clients} | {batching} | {service:,.0f} tx/s | {pgbench:,.0f} tx/s | "
      f"{service / pgbench:.2f} | {with_event:,.0f} tx/s | {service / with_event:.2f} | "
      f"{float(p99):.1f} ms |")
PY
done
echo
echo "service peak RSS with group commit: $rss MiB"
