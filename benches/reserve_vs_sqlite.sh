#!/usr/bin/env bash
# Reservation throughput of the service on SQLite against SQLite on its own:
# one writer making the same reservations with the same statements, one
# transaction each, with the same durability (synchronous=full unless
# SYNCHRONOUS says otherwise) on the same kind of file.
#
#   bash benches/reserve_vs_sqlite.sh
#
# Each figure is the median of ROUNDS rounds (default 3), the three writers
# alternating, since this machine's speed drifts from minute to minute.
# Uses a temporary directory and loopback ports 19084/18084. CLIENTS (16),
# RUN_SECONDS (10) and ROUNDS (3) override the defaults.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source benches/lib.sh

CLIENTS="${CLIENTS:-16}"
SECONDS_PER_RUN="${RUN_SECONDS:-10}"
SYNCHRONOUS="${SYNCHRONOUS:-full}"
ROUNDS="${ROUNDS:-3}"
GRPC_PORT=19084
HTTP_PORT=18084

cargo build --release --quiet --bins --example sqlite_writer
bin="${CARGO_TARGET_DIR:-target}/release"
dir="$(mktemp -d)"
server=
stop_server() {
  [[ -n "$server" ]] && { kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; }
  server=
}
trap 'stop_server; rm -rf "$dir"' EXIT

start_server() { # $1: database file, $2: group commit on (true) or off (false)
  INVENTORY_DATABASE__DSN="$1" \
  INVENTORY_DATABASE__SYNCHRONOUS="$SYNCHRONOUS" \
  INVENTORY_INVENTORY__BATCH__ENABLED="$2" \
  INVENTORY_SERVER__GRPC_PORT=$GRPC_PORT \
  INVENTORY_SERVER__HTTP_PORT=$HTTP_PORT \
  INVENTORY_SERVER__HOST=127.0.0.1 \
  INVENTORY_LOGGING__LEVEL=warn \
    "$bin/inventory-service" --config config/config.yaml >>"$dir/service.log" 2>&1 &
  server=$!
  wait_for_service "$server" "$HTTP_PORT"
}

service_run() { # $1: group commit, $2: round; sets $result to "tx/s p99_ms"
  local db="$dir/service-$1-$2.db"
  start_server "$db" "$1"
  result="$("$bin/inventory-load" --grpc "http://127.0.0.1:$GRPC_PORT" --prefix bench --products 1000 \
    --stock 1000000000 --concurrency "$CLIENTS" --duration "${SECONDS_PER_RUN}s" \
    --mix reserve=100 --json \
    | python3 -c 'import json,sys; r=json.load(sys.stdin); assert not r["mismatches"], r["mismatches"]; print(round(r["ok"]/r["seconds"]), r["latency_ms"]["p99"])')"
  stop_server
}

raw_run() { # $1: round, $2: "events" or ""; sets $result to tx/s
  # The raw writer's database: the service's schema, created by the service.
  rm -f "$dir/raw-$1.db"*
  start_server "$dir/raw-$1.db" true
  "$bin/inventory-load" --grpc "http://127.0.0.1:$GRPC_PORT" --prefix bench --products 1000 \
    --stock 1000000000 --requests 0 --no-verify --json >/dev/null
  stop_server
  local out
  out="$("$bin/examples/sqlite_writer" "$dir/raw-$1.db" 1000 "$SECONDS_PER_RUN" "$SYNCHRONOUS" $2)"
  echo "  round $1: $out" >&2
  result="$(sed -n 's/.*= \([0-9]*\) tx\/s.*/\1/p' <<<"$out")"
}

median() { tr ' ' '\n' | sort -g | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }

on=(); on_p99=(); off=(); off_p99=(); raws=(); raws_events=()
for round in $(seq 1 "$ROUNDS"); do
  service_run true "$round"; read -r tps p99 <<<"$result"; on+=("$tps"); on_p99+=("$p99")
  echo "  round $round: service, group commit: $tps tx/s (p99 $p99 ms)" >&2
  service_run false "$round"; read -r tps p99 <<<"$result"; off+=("$tps"); off_p99+=("$p99")
  echo "  round $round: service, one transaction per call: $tps tx/s (p99 $p99 ms)" >&2
  raw_run "$round" ""; raws+=("$result")
  raw_run "$round" events; raws_events+=("$result")
done
batched="$(echo "${on[*]}" | median)"; batched_p99="$(echo "${on_p99[*]}" | median)"
unbatched="$(echo "${off[*]}" | median)"; unbatched_p99="$(echo "${off_p99[*]}" | median)"
raw_tps="$(echo "${raws[*]}" | median)"
raw_events_tps="$(echo "${raws_events[*]}" | median)"

echo
echo "Medians of $ROUNDS rounds of ${SECONDS_PER_RUN} s:"
echo "| Writer | Clients | Reservations | Ratio to the raw writer | to the raw writer with the event | p99 |"
echo "|---|---|---|---|---|---|"
python3 - "$CLIENTS" "$batched" "$batched_p99" "$unbatched" "$unbatched_p99" "$raw_tps" "$raw_events_tps" "$SYNCHRONOUS" <<'PY'
import sys
clients, batched, batched_p99, unbatched, unbatched_p99, raw, raw_ev, sync = sys.argv[1:]
batched, unbatched, raw, raw_ev = float(batched), float(unbatched), float(raw), float(raw_ev)
print(f"| service, group commit | {clients} | {batched:,.0f} tx/s | {batched / raw:.2f} | {batched / raw_ev:.2f} | {float(batched_p99):.1f} ms |")
print(f"| service, one transaction per call | {clients} | {unbatched:,.0f} tx/s | {unbatched / raw:.2f} | {unbatched / raw_ev:.2f} | {float(unbatched_p99):.1f} ms |")
print(f"| SQLite alone, one writer (synchronous={sync}) | 1 | {raw:,.0f} tx/s | 1.00 | | |")
print(f"| SQLite alone, one writer, with the event | 1 | {raw_ev:,.0f} tx/s | | 1.00 | |")
PY
