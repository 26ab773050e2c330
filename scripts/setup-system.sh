#!/usr/bin/env bash
# Installs and starts everything the test suite and `encedeus up` need on a fresh
# Debian 12 machine (run as root). Safe to run again: each step checks first.
set -euo pipefail

TEST_IMAGE="${ENCEDEUS_TEST_IMAGE:-encedeus/busybox:latest}"
PACKAGES=(docker.io busybox-static postgresql openssh-server openssh-client sshpass iproute2 procps
  docker-registry apache2-utils curl nginx caddy dnsmasq wrk e2fsprogs util-linux mount chromium
  debootstrap zstd tar)
want_pg="${WANT_POSTGRES:-1}"
PACKAGES+=(restic)  # the agent's backups (docs/stateful.md)

log() { printf '[setup] %s\n' "$*" >&2; }

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  log "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >/dev/null
  apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
fi

# Docker engine: start one when none answers. --ip-masq=false so no container can
# route beyond this machine.
if ! docker info >/dev/null 2>&1; then
  log "starting dockerd"
  mkdir -p /var/log/encedeus
  # A daemon killed with its machine session leaves pid files that make the next
  # one refuse to start; they are stale when no such process is alive.
  for pidfile in /var/run/docker.pid /run/docker/containerd/containerd.pid; do
    if [ -f "$pidfile" ] && ! kill -0 "$(cat "$pidfile" 2>/dev/null)" 2>/dev/null; then
      rm -f "$pidfile"
    fi
  done
  # setsid: its own session, so that ending the shell (or job) that ran this script
  # never takes the engine down with it.
  setsid nohup dockerd --ip-masq=false >>/var/log/encedeus/dockerd.log 2>&1 < /dev/null &
  for _ in $(seq 1 60); do docker info >/dev/null 2>&1 && break; sleep 0.5; done
  docker info >/dev/null 2>&1 || { log "dockerd did not start; see /var/log/encedeus/dockerd.log"; exit 1; }
fi

# The local test image: Debian's static busybox laid out as a root filesystem.
if ! docker image inspect "$TEST_IMAGE" >/dev/null 2>&1; then
  log "building $TEST_IMAGE"
  root=$(mktemp -d)
  trap 'rm -rf "$root"' EXIT
  mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,etc,tmp,data,proc,sys,dev,root}
  cp /bin/busybox "$root/bin/busybox"
  for applet in $(/bin/busybox --list); do
    [ "$applet" = busybox ] || ln -sf /bin/busybox "$root/bin/$applet"
  done
  echo 'root:x:0:0:root:/root:/bin/sh' >"$root/etc/passwd"
  echo 'root:x:0:' >"$root/etc/group"
  chmod 1777 "$root/tmp"
  tar -C "$root" -c . | docker import -c 'CMD ["/bin/sh"]' -c 'ENV PATH=/bin:/sbin:/usr/bin:/usr/sbin' - "$TEST_IMAGE" >/dev/null
fi

# PostgreSQL for the suite's second database run.
if [ "$want_pg" = 1 ]; then
  if ! pg_lsclusters -h 2>/dev/null | awk '{print $4}' | grep -q online; then
    log "starting PostgreSQL"
    ver=$(pg_lsclusters -h | awk 'NR==1{print $1}')
    pg_ctlcluster "${ver:-15}" main start
  fi
  for _ in $(seq 1 30); do runuser -u postgres -- psql -qAtc 'select 1' >/dev/null 2>&1 && break; sleep 0.5; done
  if ! runuser -u postgres -- psql -qAtc "select 1 from pg_roles where rolname='encedeus'" | grep -q 1; then
    runuser -u postgres -- psql -qc "create role encedeus login superuser password 'encedeus'"
  fi
  if ! runuser -u postgres -- psql -qAtc "select 1 from pg_database where datname='encedeus_test'" | grep -q 1; then
    runuser -u postgres -- createdb -O encedeus encedeus_test
  fi
fi
# The test registry (Debian's distribution 2.8): loopback only, htpasswd (bcrypt) auth,
# its own config and storage. The package's default config listens on :5000 of every
# address and its init script would start it so; that daemon is never used, and
# stopped when a boot started it.
REGISTRY_DIR="${ENCEDEUS_TEST_REGISTRY_DIR:-/var/lib/encedeus-registry}"
REGISTRY_ADDR="${ENCEDEUS_TEST_REGISTRY:-127.0.0.1:5000}"
REGISTRY_USER="${ENCEDEUS_TEST_REGISTRY_USER:-encedeus}"
REGISTRY_PASSWORD="${ENCEDEUS_TEST_REGISTRY_PASSWORD:-encedeus-registry}"
if [ -x /etc/init.d/docker-registry ] && /etc/init.d/docker-registry status >/dev/null 2>&1; then
  log "stopping the distribution's own docker-registry daemon (listens on every address)"
  /etc/init.d/docker-registry stop >/dev/null 2>&1 || true
fi
mkdir -p "$REGISTRY_DIR/data" /var/log/encedeus
if [ ! -s "$REGISTRY_DIR/htpasswd" ] || ! htpasswd -vb "$REGISTRY_DIR/htpasswd" "$REGISTRY_USER" "$REGISTRY_PASSWORD" >/dev/null 2>&1; then
  htpasswd -Bbc "$REGISTRY_DIR/htpasswd" "$REGISTRY_USER" "$REGISTRY_PASSWORD" >/dev/null 2>&1
fi
cat >"$REGISTRY_DIR/config.yml.new" <<YAML
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $REGISTRY_DIR/data
  delete:
    enabled: true
http:
  addr: $REGISTRY_ADDR
auth:
  htpasswd:
    realm: encedeus-test
    path: $REGISTRY_DIR/htpasswd
YAML
mv "$REGISTRY_DIR/config.yml.new" "$REGISTRY_DIR/config.yml"
registry_status() { curl -s -o /dev/null -w '%{http_code}' "http://$REGISTRY_ADDR/v2/" 2>/dev/null || true; }
if [ "$(registry_status)" != 401 ]; then
  log "starting the test registry on $REGISTRY_ADDR"
  setsid nohup docker-registry serve "$REGISTRY_DIR/config.yml" >>/var/log/encedeus/registry.log 2>&1 < /dev/null &
  for _ in $(seq 1 40); do [ "$(registry_status)" = 401 ] && break; sleep 0.25; done
  [ "$(registry_status)" = 401 ] || { log "the registry did not start; see /var/log/encedeus/registry.log"; exit 1; }
fi
# Caddy (the ingress engine) and dnsmasq (the DNS server of the custom-domain tests)
# come with init scripts/units that may start system-wide daemons on :80 and :53.
# Encedeus never uses them: the agent starts its own Caddy, tests start dnsmasq on a
# loopback port. Stop the packaged ones when something started them.
for svc in caddy dnsmasq; do
  if [ -x "/etc/init.d/$svc" ] && "/etc/init.d/$svc" status >/dev/null 2>&1; then
    log "stopping the distribution's own $svc daemon"
    "/etc/init.d/$svc" stop >/dev/null 2>&1 || true
  fi
done
log "system ready"
