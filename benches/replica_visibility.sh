#!/usr/bin/env bash
# How soon a write on one replica is seen by a check on another: two
# replicas on one PostgreSQL database, first with the memory cache (changes
# travel by LISTEN/NOTIFY), then with the shared Redis cache. For each,
# examples/replica_visibility.rs writes WRITES times on replica A and checks
# replica B without pause until it shows each write, and prints the
# percentiles of the delay from A's answer to B's first check showing it.
#
#   bash benches/replica_visibility.sh      # needs the local PostgreSQL and Redis
#
# Uses a throwaway database inventory_visibility on 127.0.0.1:5432 (user
# postgres), dropped at the end, Redis on 127.0.0.1:6379 (keys under a
# throwaway prefix, expiring), and loopback ports 18083-18084/19083-19084.
# WRITES (default 1000) overrides the count.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source benches/lib.sh

WRITES="${WRITES:-1000}"
PG="postgres://postgres@127.0.0.1:5432"
DB=inventory_visibility
PREFIX="visibility-$$"

cargo build --release --quiet --bin inventory-service --example replica_visibility
bin="${CARGO_TARGET_DIR:-target}/release"

servers=()
stop_servers() {
  for pid in "${servers[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${servers[@]}"; do wait "$pid" 2>/dev/null || true; done
  servers=()
}
cleanup() {
  stop_servers
  psql -q "$PG/postgres" -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" || true
}
trap cleanup EXIT

start_replica() { # $1: port suffix (3 or 4), $2: cache type
  INVENTORY_DATABASE__DRIVER=postgres \
  DATABASE_URL="$PG/$DB" \
  INVENTORY_CACHE__TYPE="$2" \
  INVENTORY_CACHE__KEY_PREFIX="$PREFIX" \
  INVENTORY_SERVER__GRPC_PORT="1908$1" \
  INVENTORY_SERVER__HTTP_PORT="1808$1" \
  INVENTORY_SERVER__HOST=127.0.0.1 \
  INVENTORY_LOGGING__LEVEL=warn \
    "$bin/inventory-service" --config config/config.yaml >>/tmp/inventory-visibility.log 2>&1 &
  servers+=($!)
  wait_for_service "${servers[-1]}" "1808$1"
}

for cache in memory redis; do
  psql -q "$PG/postgres" -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" -c "CREATE DATABASE $DB"
  start_replica 3 "$cache"
  start_replica 4 "$cache"
  echo -n "$cache cache: "
  timeout 300 "$bin/examples/replica_visibility" http://127.0.0.1:19083 http://127.0.0.1:19084 "$WRITES"
  stop_servers
done
