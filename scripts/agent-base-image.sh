#!/usr/bin/env bash
# Makes the base image Dockerfile.agent builds on, from Debian alone: debootstrap
# (bookworm, minbase, plus Python and what the agent runs) into a folder, then
# `docker import`. No container registry is needed. Idempotent and cached: the
# rootfs tarball is kept in $CACHE_DIR, so a machine pays for debootstrap once, and a
# new dockerd only re-imports it.
#
#   bash scripts/agent-base-image.sh [IMAGE]      # default encedeus/debian-base:bookworm
set -euo pipefail

IMAGE="${1:-${ENCEDEUS_AGENT_BASE_IMAGE:-encedeus/debian-base:bookworm}}"
SUITE=bookworm
CACHE_DIR="${ENCEDEUS_CACHE_DIR:-/var/cache/encedeus}"
# What Skyhook runs besides Python: mkfs.ext4/losetup/mount for disk limits.
INCLUDE=python3,python3-venv,ca-certificates,e2fsprogs,mount,util-linux
TARBALL="$CACHE_DIR/debian-base-$SUITE-$(echo "$INCLUDE" | sha256sum | cut -c1-12).tar"

log() { printf '[agent-base] %s\n' "$*" >&2; }

# The Debian mirror this machine's apt already uses (deb822 or one-line sources).
mirror() {
  local uri
  uri=$(grep -hsE '^URIs:' /etc/apt/sources.list.d/*.sources | awk '{print $2}' |
    grep -v -- '-security' | head -n1 || true)
  if [ -z "$uri" ]; then
    uri=$(grep -hsE '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list |
      awk '{print $2}' | grep -v -- '-security' | grep -i debian | head -n1 || true)
  fi
  echo "${uri:-http://deb.debian.org/debian}"
}

if docker image inspect "$IMAGE" >/dev/null 2>&1; then
  exit 0
fi
mkdir -p "$CACHE_DIR"
# One maker at a time per machine (several checkouts may run their suites at once).
exec 9>"$CACHE_DIR/.agent-base.lock"
flock 9
if docker image inspect "$IMAGE" >/dev/null 2>&1; then
  exit 0
fi
if [ ! -s "$TARBALL" ]; then
  command -v debootstrap >/dev/null || { log "debootstrap is missing (scripts/setup-system.sh)"; exit 1; }
  root=$(mktemp -d "$CACHE_DIR/rootfs.XXXXXX")
  trap 'rm -rf "$root" "$TARBALL.partial"' EXIT
  log "debootstrap $SUITE from $(mirror) (once per machine)"
  debootstrap --variant=minbase --include="$INCLUDE" "$SUITE" "$root" "$(mirror)" \
    >"$CACHE_DIR/debootstrap.log" 2>&1 || { log "debootstrap failed: see $CACHE_DIR/debootstrap.log"; exit 1; }
  rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
  tar -C "$root" --numeric-owner -cf "$TARBALL.partial" .
  mv "$TARBALL.partial" "$TARBALL"
fi
log "importing $IMAGE"
docker import -c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  -c 'CMD ["/bin/bash"]' "$TARBALL" "$IMAGE" >/dev/null
