#!/usr/bin/env bash
# The published contract against the running service: schemathesis reads
# /openapi.json and sends requests it generates from the schemas (valid ones,
# and invalid ones that must be refused), with every check on: no 5xx, every
# status and body as documented, every schema-valid request accepted, every
# schema-invalid one refused.
#
#   bash tests/contract/run.sh                    # builds the debug binary if needed
#   MAX_EXAMPLES=100 SEED=7 bash tests/contract/run.sh
#
# Installs schemathesis (the version in tests/contract/requirements.txt) in a
# venv under the target dir, starts the service on two free loopback ports
# with a throwaway SQLite file, runs schemathesis with
# tests/contract/schemathesis.toml, and stops the service. Fails if
# schemathesis reports any failure or error.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

MAX_EXAMPLES="${MAX_EXAMPLES:-20}"
SEED="${SEED:-1}"
target="${CARGO_TARGET_DIR:-target}"
venv="$target/schemathesis-venv"
bin="${INVENTORY_BIN:-$target/debug/inventory-service}"

if [[ ! -x "$venv/bin/schemathesis" ]] || ! cmp -s tests/contract/requirements.txt "$venv/requirements.txt"; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r tests/contract/requirements.txt
  cp tests/contract/requirements.txt "$venv/requirements.txt"
fi
"$venv/bin/schemathesis" --version
[[ -x "$bin" ]] || cargo build --quiet --bin inventory-service

work="$(mktemp -d)"
server=""
cleanup() {
  if [[ -n "$server" ]]; then kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

read -r http_port grpc_port < <(python3 - <<'PY'
import socket
socks = [socket.socket() for _ in range(2)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in socks))
PY
)
INVENTORY_DATABASE__DSN="$work/contract.db" \
INVENTORY_SERVER__HOST=127.0.0.1 \
INVENTORY_SERVER__HTTP_PORT="$http_port" \
INVENTORY_SERVER__GRPC_PORT="$grpc_port" \
INVENTORY_LOGGING__LEVEL=warn \
  "$bin" --config config/config.yaml >"$work/service.log" 2>&1 &
server=$!
base="http://127.0.0.1:$http_port"
for _ in $(seq 1 100); do
  curl -sf "$base/health" >/dev/null && break
  kill -0 "$server" 2>/dev/null || { cat "$work/service.log" >&2; exit 1; }
  sleep 0.1
done
curl -sf "$base/health" >/dev/null || { echo "the service did not start" >&2; cat "$work/service.log" >&2; exit 1; }

status=0
# GET /api/v1/events (WatchInventory) streams until the client leaves: a
# request-response checker would wait for its end. tests/events.rs covers it.
(cd "$work" && timeout 900 "$OLDPWD/$venv/bin/schemathesis" \
  --config-file "$OLDPWD/tests/contract/schemathesis.toml" \
  run "$base/openapi.json" --url "$base" \
  --exclude-path /api/v1/events \
  --checks all --max-examples "$MAX_EXAMPLES" --seed "$SEED" \
  --no-color) || status=$?
if ((status != 0)); then
  echo "schemathesis failed (exit $status); the service's log:" >&2
  tail -n 50 "$work/service.log" >&2
fi
exit "$status"
