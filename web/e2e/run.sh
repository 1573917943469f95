#!/usr/bin/env bash
# Runs the browser end-to-end test of the web console (web/e2e/*.test.mjs):
# installs Debian's chromium if missing (never a Playwright browser
# download), npm packages from the lockfile if missing, then starts a real
# service per test file on ephemeral loopback ports.
#
#   bash web/e2e/run.sh                      # after `cargo build`
#   INVENTORY_BIN=/path/to/inventory-service CONSOLE_ORIGIN_MODE=static bash web/e2e/run.sh
#
# INVENTORY_BIN: absolute, or relative to web/ (default
# ../target/debug/inventory-service). CONSOLE_ORIGIN_MODE: service (default;
# the console the service serves at GET /) or static (web/dist served by the
# test, calling the service cross-origin through ?api=).
set -euo pipefail

web="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$web"

if [[ ! -x /usr/bin/chromium ]]; then
  echo "installing chromium (apt)"
  sudo=""
  [[ "$(id -u)" -eq 0 ]] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium
fi
/usr/bin/chromium --version 2>/dev/null || true

if [[ ! -d node_modules ]]; then
  echo "npm ci"
  npm ci --no-audit --no-fund --loglevel=error
fi

export INVENTORY_BIN="${INVENTORY_BIN:-../target/debug/inventory-service}"
if [[ ! -x "$INVENTORY_BIN" ]]; then
  echo "ERROR: no service binary at $INVENTORY_BIN (relative to $web); run cargo build first or set INVENTORY_BIN" >&2
  exit 1
fi
echo "service: $INVENTORY_BIN, console from: ${CONSOLE_ORIGIN_MODE:-service}"

exec timeout --kill-after=10 600 npm run --silent test:e2e
