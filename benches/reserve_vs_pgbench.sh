#!/usr/bin/env bash
# Reservation throughput of the service on PostgreSQL against pgbench running
# the identical SQL transaction (benches/pgbench/reserve.sql) at the same
# concurrency: once spread over 1,000 products, once on one hot product.
#
#   bash benches/reserve_vs_pgbench.sh      # needs pgbench and the local PostgreSQL
#
# Uses a throwaway database inventory_bench on 127.0.0.1:5432 (user postgres),
# dropped at the end, and loopback ports 19083/18083. CLIENTS and RUN_SECONDS
# override the defaults (16 clients, 10 s per run).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

CLIENTS="${CLIENTS:-16}"
SECONDS_PER_RUN="${RUN_SECONDS:-10}"
PG="postgres://postgres@127.0.0.1:5432"
DB=inventory_bench
GRPC_PORT=19083
HTTP_PORT=18083

command -v pgbench >/dev/null || { echo "pgbench missing (Debian: postgresql-client)" >&2; exit 1; }
cargo build --release --quiet --example reserve_load
cargo build --release --quiet
bin="${CARGO_TARGET_DIR:-target}/release"

psql -q "$PG/postgres" -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" -c "CREATE DATABASE $DB"
server=
cleanup() {
  [[ -n "$server" ]] && { kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; }
  psql -q "$PG/postgres" -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" || true
}
trap cleanup EXIT

INVENTORY_DATABASE__DRIVER=postgres \
DATABASE_URL="$PG/$DB" \
INVENTORY_DATABASE__MAX_CONNECTIONS="$CLIENTS" \
INVENTORY_SERVER__GRPC_PORT=$GRPC_PORT \
INVENTORY_SERVER__HTTP_PORT=$HTTP_PORT \
INVENTORY_SERVER__HOST=127.0.0.1 \
INVENTORY_LOGGING__LEVEL=warn \
  "$bin/inventory-service" --config config/config.yaml &
server=$!
for _ in $(seq 1 100); do
  curl -sf "http://127.0.0.1:$HTTP_PORT/health" >/dev/null && break
  sleep 0.1
done

stock() { # Fresh stock and no reservations before every run.
  psql -q "$PG/$DB" <<SQL
TRUNCATE inventory_history, inventory_reservations, inventory CASCADE;
INSERT INTO inventory (product_id, total_quantity)
  SELECT 'bench-' || g, 1000000000 FROM generate_series(1, 1000) g;
VACUUM ANALYZE;
SQL
}

declare -A result
for products in 1000 1; do
  stock
  line="$("$bin/examples/reserve_load" "http://127.0.0.1:$GRPC_PORT" "$CLIENTS" "$products" "$SECONDS_PER_RUN")"
  echo "service, $products product(s): $line"
  result["service-$products"]="$(sed -n 's/.*= \([0-9]*\) tx\/s.*/\1/p' <<<"$line")"
  stock
  out="$(pgbench -n -f benches/pgbench/reserve.sql -D products="$products" \
    -c "$CLIENTS" -j 2 -T "$SECONDS_PER_RUN" "$PG/$DB" 2>&1)"
  tps="$(sed -n 's/^tps = \([0-9.]*\).*/\1/p' <<<"$out" | head -n 1)"
  echo "pgbench, $products product(s): $tps tx/s"
  result["pgbench-$products"]="$tps"
done

for products in 1000 1; do
  python3 - "$products" "${result[service-$products]}" "${result[pgbench-$products]}" <<'PY'
import sys
products, service, pgbench = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
print(f"{products:>4} product(s): service {service:,.0f} tx/s, pgbench {pgbench:,.0f} tx/s, "
      f"service/pgbench = {service / pgbench:.0%}")
PY
done
