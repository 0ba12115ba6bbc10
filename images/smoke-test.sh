#!/usr/bin/env bash
# Smoke test of the platform images built by scripts/images.sh:
#
#   bash images/smoke-test.sh
#
# - berth-node:20      node and npm answer; runs as user app; tini forwards SIGTERM
# - berth-postgres:15  official-style env, psql from the host over a published
#                      127.0.0.1 port, init scripts, restart on the same volume
#                      keeps the data and skips initdb, wrong password refused
# - berth-nginx:1.22   as root with a mounted config, and as a derived non-root
#                      image on 8080 (the documented tenant recipe)
#
# Everything it creates is labelled berth.test=true and berth.smoke=<run id>
# and removed by that pair of labels at the end (other tests' objects stay).
# Needs psql and curl on the host (scripts/setup.sh installs them).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
run="smoke$$$RANDOM"
labels=(--label berth.test=true --label "berth.smoke=$run")
export DOCKER_BUILDKIT=0
tmp="$(mktemp -d)"
failures=0
passes=0

log() { printf '[smoke] %s\n' "$*" >&2; }
ok() { passes=$((passes + 1)); log "ok: $*"; }
fail() { failures=$((failures + 1)); log "FAIL: $*"; }
check() { local what="$1"; shift; if "$@"; then ok "$what"; else fail "$what"; fi; }

cleanup() {
  bash "$root/scripts/cleanup.sh" --images berth.test=true "berth.smoke=$run" || true
  rm -rf "$tmp"
}
trap cleanup EXIT

# A free high port on 127.0.0.1.
free_port() {
  local p
  while :; do
    p=$((20000 + RANDOM % 40000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then echo "$p"; return; fi
  done
}

wait_for() { # seconds command...
  local n=$(($1 * 10)); shift
  while [ "$n" -gt 0 ]; do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; n=$((n - 1)); done
  return 1
}

# ---- berth-node:20 ----------------------------------------------------------
v="$(docker run --rm "${labels[@]}" berth-node:20 node -e 'console.log(process.version)')"
check "node $v" [ "${v#v}" != "$v" ]
v="$(docker run --rm "${labels[@]}" berth-node:20 npm --version)"
check "npm $v" [ -n "$v" ]
v="$(docker run --rm "${labels[@]}" --user app berth-node:20 id)"
check "user app: $v" [ "$v" = "uid=10001(app) gid=10001(app) groups=10001(app)" ]
v="$(docker run --rm "${labels[@]}" berth-node:20 node -e 'fetch; require("https"); console.log(require("tls").rootCertificates.length > 0)')"
check "node has TLS roots" [ "$v" = true ]
docker run -d "${labels[@]}" --name "$run-node" berth-node:20 node -e 'setInterval(() => {}, 1000); process.on("SIGTERM", () => process.exit(0))' >/dev/null
t0=$(date +%s%N)
docker stop "$run-node" >/dev/null
ms=$((($(date +%s%N) - t0) / 1000000))
check "docker stop of a node app takes ${ms} ms (tini forwards SIGTERM)" [ "$ms" -lt 5000 ]

# ---- berth-postgres:15 ------------------------------------------------------
vol="$run-pgdata"
docker volume create "${labels[@]}" "$vol" >/dev/null
port="$(free_port)"
mkdir -p "$tmp/initdb"
cat >"$tmp/initdb/10-seed.sql" <<'EOF'
CREATE TABLE seeded (id int PRIMARY KEY, note text);
INSERT INTO seeded VALUES (1, 'from initdb.d');
EOF
cat >"$tmp/initdb/20-count.sh" <<'EOF'
#!/bin/bash
echo "init script ran as $(id -un)" > "$PGDATA/init-script-ran"
EOF
chmod 0755 "$tmp/initdb/20-count.sh"
chmod 0755 "$tmp/initdb"
chmod 0644 "$tmp/initdb/10-seed.sql"

pg_start() {
  docker run -d "${labels[@]}" --name "$run-pg" -p "127.0.0.1:$port:5432" \
    -e POSTGRES_PASSWORD=s3cret -e POSTGRES_USER=berth -e POSTGRES_DB=appdb \
    -v "$vol:/var/lib/postgresql/data" -v "$tmp/initdb:/docker-entrypoint-initdb.d:ro" \
    berth-postgres:15 >/dev/null
}
pg_ready() { docker exec "$run-pg" pg_isready -q -h 127.0.0.1 -U berth -d appdb; }
psql_host() { PGPASSWORD=s3cret psql -X -q -At -h 127.0.0.1 -p "$port" -U berth -d appdb "$@"; }

t0=$(date +%s%N)
pg_start
if wait_for 60 pg_ready; then
  ok "postgres ready after $((($(date +%s%N) - t0) / 1000000)) ms (first start, initdb)"
else
  fail "postgres not ready"; docker logs "$run-pg" 2>&1 | tail -n 30 >&2
fi
check "psql from the host (127.0.0.1:$port)" wait_for 10 psql_host -c 'SELECT 1'
check "initdb.d .sql ran" [ "$(psql_host -c 'SELECT note FROM seeded WHERE id = 1')" = "from initdb.d" ]
check "initdb.d .sh ran as postgres" [ "$(docker exec "$run-pg" cat /var/lib/postgresql/data/init-script-ran)" = "init script ran as postgres" ]
psql_host -c "INSERT INTO seeded VALUES (2, 'written before restart')"
check "server runs as postgres (uid 999), PID 1" [ "$(docker exec "$run-pg" stat -c %u /proc/1)" = "999" ]
check "password_encryption = scram-sha-256" [ "$(psql_host -c 'SHOW password_encryption')" = scram-sha-256 ]
check "listen_addresses = *" [ "$(psql_host -c 'SHOW listen_addresses')" = '*' ]
check "encoding UTF8" [ "$(psql_host -c 'SHOW server_encoding')" = UTF8 ]
check "wrong password refused" bash -c "! PGPASSWORD=wrong psql -X -At -h 127.0.0.1 -p $port -U berth -d appdb -c 'SELECT 1' 2>/dev/null"
check "pg_hba has the network line" docker exec "$run-pg" grep -qx 'host all all all scram-sha-256' /var/lib/postgresql/data/pg_hba.conf

t0=$(date +%s%N)
docker stop "$run-pg" >/dev/null
check "docker stop postgres takes $((($(date +%s%N) - t0) / 1000000)) ms (SIGINT fast shutdown)" [ "$((($(date +%s%N) - t0) / 1000000))" -lt 8000 ]
docker rm "$run-pg" >/dev/null
pg_start
check "postgres ready again on the same volume" wait_for 60 pg_ready
check "data survived the restart" wait_for 10 bash -c "[ \"\$(PGPASSWORD=s3cret psql -X -At -h 127.0.0.1 -p $port -U berth -d appdb -c 'SELECT count(*) FROM seeded')\" = 2 ]"
check "no second initdb" bash -c "docker logs $run-pg 2>&1 | grep -q 'Skipping initialization'"
docker rm -f "$run-pg" >/dev/null

# Without a password it must refuse to initialise, like the official image.
out="$(docker run --rm "${labels[@]}" berth-postgres:15 2>&1 || true)"
check "refuses to init without POSTGRES_PASSWORD" grep -q 'superuser password is not specified' <<<"$out"

# ---- berth-nginx:1.22 -------------------------------------------------------
port="$(free_port)"
cat >"$tmp/root.conf" <<'EOF'
server { listen 80; location / { return 200 "berth-nginx as root\n"; } }
EOF
docker run -d "${labels[@]}" --name "$run-nginx" -p "127.0.0.1:$port:80" \
  -v "$tmp/root.conf:/etc/nginx/conf.d/default.conf:ro" berth-nginx:1.22 >/dev/null
check "nginx as root answers on 127.0.0.1:$port" wait_for 10 bash -c "curl -fsS http://127.0.0.1:$port/ | grep -q 'as root'"
check "nginx access log goes to docker logs" wait_for 5 bash -c "docker logs $run-nginx 2>/dev/null | grep -q 'GET / HTTP'"
t0=$(date +%s%N)
docker stop "$run-nginx" >/dev/null
check "docker stop nginx takes $((($(date +%s%N) - t0) / 1000000)) ms (SIGQUIT)" [ "$((($(date +%s%N) - t0) / 1000000))" -lt 5000 ]

# The documented non-root tenant recipe.
mkdir -p "$tmp/site/public"
echo 'hello from a static tenant' >"$tmp/site/public/index.html"
cat >"$tmp/site/site.conf" <<'EOF'
server {
  listen 8080;
  root /srv/www;
  location / { try_files $uri $uri/ =404; }
  # request bodies are buffered to /var/lib/nginx/body before proxying
  location /upload { proxy_pass http://127.0.0.1:8080/done; }
  location /done { return 200 "uploaded\n"; }
}
EOF
cat >"$tmp/site/Dockerfile" <<'EOF'
FROM berth-nginx:1.22
COPY site.conf /etc/nginx/conf.d/site.conf
COPY --chown=app:app public/ /srv/www/
USER app
HEALTHCHECK --interval=1s --timeout=3s CMD curl -fsS http://127.0.0.1:8080/ >/dev/null || exit 1
EOF
docker build -q "${labels[@]}" -t "berth-smoke-site:$run" "$tmp/site" >/dev/null
port="$(free_port)"
docker run -d "${labels[@]}" --name "$run-site" -p "127.0.0.1:$port:8080" "berth-smoke-site:$run" >/dev/null
check "non-root static site answers on 8080" wait_for 10 bash -c "curl -fsS http://127.0.0.1:$port/ | grep -q 'static tenant'"
check "non-root site becomes healthy" wait_for 15 bash -c "[ \"\$(docker inspect -f '{{.State.Health.Status}}' $run-site)\" = healthy ]"
check "nginx master runs as app" [ "$(docker exec "$run-site" stat -c %u /proc/1)" = 10001 ]
check "a 1 MB upload (client body temp file) works as app" bash -c "head -c 1048576 /dev/zero | curl -fsS -X POST --data-binary @- http://127.0.0.1:$port/upload | grep -q uploaded"
if docker logs "$run-site" 2>&1 | grep -E '\[(emerg|crit|alert)\]' >&2; then fail "non-root nginx logged errors"; else ok "no emerg/crit in non-root nginx logs"; fi

log "$passes passed, $failures failed"
echo "$passes passed, $failures failed"
[ "$failures" -eq 0 ]
