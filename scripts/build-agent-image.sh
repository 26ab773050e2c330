#!/usr/bin/env bash
# Builds Skyhook's image from Dockerfile.agent with no registry at all, and prints its
# reference (the last line of stdout): encedeus/skyhook:<content hash>, also tagged
# encedeus/skyhook:latest.
#
#   bash scripts/build-agent-image.sh [REPOSITORY]     # default encedeus/skyhook
#
# - the base image: scripts/agent-base-image.sh (Debian by debootstrap, cached);
# - the wheelhouse, built on the host (containers on the engine reach no package
#   registry): the dependencies of the `agent` extra at the versions this checkout's
#   venv runs, cached per machine under $CACHE_DIR keyed by pyproject.toml and those
#   versions, plus the project's own wheel, built reproducibly (SOURCE_DATE_EPOCH)
#   from a clean copy of the sources;
# - the tag is a hash of the Dockerfile, the base image and every wheel: an unchanged
#   checkout finds its image and builds nothing; a change of our code alone rebuilds
#   only the last layer.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
REPOSITORY="${1:-${ENCEDEUS_AGENT_IMAGE:-encedeus/skyhook}}"
BASE="${ENCEDEUS_AGENT_BASE_IMAGE:-encedeus/debian-base:bookworm}"
PY="${PYTHON:-$ROOT/.venv/bin/python}"
CACHE_DIR="${ENCEDEUS_CACHE_DIR:-/var/cache/encedeus}"

log() { printf '[agent-image] %s\n' "$*" >&2; }

bash "$ROOT/scripts/agent-base-image.sh" "$BASE"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/context" "$work/src" "$CACHE_DIR"

# The project's wheel, from the sources only (no build/, caches or UI bundle).
tar -C "$ROOT" --exclude=__pycache__ --exclude=controlplane/ui_dist \
  -cf - pyproject.toml README.md agent common controlplane protos | tar -C "$work/src" -xf -
SOURCE_DATE_EPOCH=315532800 "$PY" -m pip wheel -q --no-deps --no-build-isolation \
  -w "$work/context" "$work/src" >&2

# The dependencies, at the venv's versions.
"$PY" -m pip freeze --exclude-editable | grep -v '^encedeus' >"$work/constraints.txt"
deps_key=$(cat "$ROOT/pyproject.toml" "$work/constraints.txt" | sha256sum | cut -c1-16)
deps="$CACHE_DIR/wheelhouse-$deps_key"
exec 9>"$CACHE_DIR/.wheelhouse.lock"
flock 9  # one wheelhouse build at a time per machine
if [ ! -d "$deps" ]; then
  log "building the dependency wheelhouse (once per dependency set)"
  rm -rf "$deps.partial"
  wheel=$(ls "$work/context"/encedeus-*.whl)
  "$PY" -m pip wheel -q --no-build-isolation -c "$work/constraints.txt" \
    -w "$deps.partial" "$wheel[agent]" >&2
  rm -f "$deps.partial"/encedeus-*.whl
  mv "$deps.partial" "$deps"
fi
cp -r "$deps" "$work/context/deps"
exec 9>&-

tag=$(
  {
    sha256sum "$ROOT/Dockerfile.agent" | cut -d' ' -f1
    docker image inspect -f '{{.Id}}' "$BASE"
    (cd "$work/context" && find . -type f | LC_ALL=C sort | xargs sha256sum)
  } | sha256sum | cut -c1-16
)
image="$REPOSITORY:$tag"
if ! docker image inspect "$image" >/dev/null 2>&1; then
  log "building $image"
  docker build -q --network none --build-arg "BASE=$BASE" -f "$ROOT/Dockerfile.agent" \
    -t "$image" "$work/context" >&2
fi
docker tag "$image" "$REPOSITORY:latest"
echo "$image"
