#!/usr/bin/env bash
# Builds the web UI (ui/) into controlplane/ui_dist, skipping the work when nothing
# changed: the stamp holds a hash of the UI's sources and lock file. `npm ci` runs only
# when the lock file changed. Usage: build-ui.sh [--check] (--check also runs
# svelte-check, tsc and the Vitest component tests).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
node="$root/scripts/node.sh"
cd "$root/ui"

hash_of() { # files → one hash of their names and contents
  find "$@" -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum | cut -c1-16
}

lock_hash=$(sha256sum package-lock.json | cut -c1-16)
if [ ! -f "node_modules/.lock-$lock_hash" ]; then
  echo "[ui] npm ci" >&2
  bash "$node" npm ci --no-audit --no-fund --loglevel=error
  touch "node_modules/.lock-$lock_hash"
fi

if [ "${1:-}" = --check ]; then
  bash "$node" npm run --silent check
  bash "$node" npm run --silent test
  exit 0
fi

dist="$root/controlplane/ui_dist"
source_hash=$(hash_of src index.html package.json package-lock.json vite.config.ts svelte.config.js tsconfig.json)
if [ -f "$dist/.stamp-$source_hash" ] && [ -f "$dist/index.html" ]; then
  exit 0
fi
echo "[ui] building" >&2
bash "$node" npm run --silent build
touch "$dist/.stamp-$source_hash"
