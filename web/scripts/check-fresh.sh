#!/usr/bin/env bash
# Fails if the committed generated TypeScript (web/src/gen) or the committed
# console bundle (web/dist) differ from what the pinned tools produce now.
# CI runs it; run it locally before committing a change to the protos or to
# web/src:
#
#   bash web/scripts/check-fresh.sh
#
# Steps: npm ci (from web/package-lock.json), buf generate, esbuild build,
# tsc --noEmit, then git diff --exit-code on web/src/gen and web/dist (and
# no untracked file there). Stage (git add) the regenerated output and it
# passes; CI compares against the commit.
set -euo pipefail

web="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$web"

# CI has just installed them (WEB_TOOLS_READY=1); anywhere else, install
# exactly what the lockfile says.
if [[ "${WEB_TOOLS_READY:-}" != 1 ]]; then
  echo "== npm ci"
  npm ci --no-audit --no-fund --loglevel=error
fi
echo "== buf generate (web/src/gen)"
npm run --silent generate
echo "== esbuild (web/dist)"
npm run --silent build
echo "== tsc --noEmit"
npm run --silent check

echo "== committed output is fresh"
cd "$web/.."
status=0
if ! git diff --exit-code --stat -- web/src/gen web/dist; then
  git --no-pager diff -- web/src/gen web/dist | head -n 200
  status=1
fi
untracked="$(git ls-files --others --exclude-standard -- web/src/gen web/dist)"
if [[ -n "$untracked" ]]; then
  echo "generated but not committed:" >&2
  echo "$untracked" >&2
  status=1
fi
if [[ "$status" -ne 0 ]]; then
  echo "web/src/gen or web/dist is stale: run 'cd web && npm ci && npm run generate && npm run build' and commit the result" >&2
  exit 1
fi
echo "web/src/gen and web/dist are up to date"
