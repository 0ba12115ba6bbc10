#!/usr/bin/env bash
# Prepare this machine for berth's tests and demos. Idempotent; run as root.
#
#  1. install the Debian packages we need (apt-get update only when one is missing)
#  2. start dockerd when `docker info` does not answer
#  3. build the platform images (scripts/images.sh; each one is skipped when cached)
#
# Works without stdin and with CI=true. Progress goes to stderr.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
log() { printf '[setup] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

[ "$(id -u)" = 0 ] || die "must run as root"
export DEBIAN_FRONTEND=noninteractive

# Debian packages: the docker engine, debootstrap for the base image, TLS roots,
# curl/psql for checks from the host, wrk/hyperfine for the benchmarks, nginx and its Lua
# module for the renderer's `nginx -t` unit test (its service is not started), openssl for self-signed
# certificates, git for deploys from a repository, systemd-analyze to check the shipped berthd unit,
# sqlite3 for the secrets test's dump of the state database.
packages=(docker.io debootstrap ca-certificates curl postgresql-client wrk hyperfine nginx-light libnginx-mod-http-lua openssl git systemd sqlite3)

is_installed() {
  [ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null || true)" = installed ]
}

missing=()
for p in "${packages[@]}"; do
  is_installed "$p" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  log "installing: ${missing[*]}"
  apt_log=/var/log/berth-setup-apt.log
  if ! { apt-get update -qq && NEEDRESTART_MODE=l apt-get install -y -qq --no-install-recommends "${missing[@]}"; } \
      </dev/null >"$apt_log" 2>&1; then
    tail -n 30 "$apt_log" >&2
    die "apt-get failed (log: $apt_log)"
  fi
else
  log "packages present"
fi

# The node/npm used on the host to fetch Node's binary for berth-node:20.
command -v npm >/dev/null || die "npm is not on PATH (Node 20 with npm is required on the host)"

# Docker engine. Either client on PATH works (the daemon speaks API 1.41).
if docker info >/dev/null 2>&1; then
  log "dockerd answering"
else
  log "starting dockerd (log: /var/log/berth-dockerd.log)"
  setsid nohup dockerd >/var/log/berth-dockerd.log 2>&1 </dev/null &
  for _ in $(seq 1 300); do          # up to ~30 s
    docker info >/dev/null 2>&1 && break
    sleep 0.1
  done
  docker info >/dev/null 2>&1 || { tail -n 20 /var/log/berth-dockerd.log >&2 || true; die "dockerd did not come up within 30 s"; }
  log "dockerd up"
fi

bash "$here/images.sh"
log "done"
