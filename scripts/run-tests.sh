#!/usr/bin/env bash
# The suite, as `make pytest` runs it. With no arguments, in two passes: the tests
# that need no Docker engine in parallel (pytest-xdist workers: most of them wait on
# sockets, databases and subprocesses, not on the CPU), then the docker and
# end-to-end tests one at a time (they share the one dockerd and the nodes' host port
# ranges). With arguments (PYTEST_ARGS), one serial run of just that selection.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
if [ "$#" -gt 0 ]; then
  exec "$PY" -m pytest "$@"
fi
workers=${ENCEDEUS_TEST_WORKERS:-4}
status=0
"$PY" -m pytest -n "$workers" -m "not docker and not e2e" --durations=15 || status=$?
"$PY" -m pytest -m "docker or e2e" --durations=25 || status=$?
exit "$status"
