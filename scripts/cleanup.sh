#!/usr/bin/env bash
# Remove the Docker objects that carry a label — and nothing else.
#
#   scripts/cleanup.sh                       # label berth.test=true (the default)
#   scripts/cleanup.sh berth.platform=demo   # another selector: key=value or key
#   scripts/cleanup.sh a=1 b=2               # several selectors: objects must match all
#   scripts/cleanup.sh --images [SELECTOR..] # also remove images with the label(s)
#
# Removes swarm services (when this node is a swarm manager), containers (with
# their anonymous volumes), networks and volumes matching the selector(s).
# Never prunes and never touches an object without the label.
set -euo pipefail

log() { printf '[cleanup] %s\n' "$*" >&2; }

images=
selectors=()
for arg; do
  case "$arg" in
    --images) images=1 ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    -*) log "unknown option $arg"; exit 2 ;;
    *)
      [[ "$arg" =~ ^[A-Za-z0-9][A-Za-z0-9._/-]*(=.*)?$ ]] || { log "bad label selector: $arg"; exit 2; }
      selectors+=("$arg")
      ;;
  esac
done
[ "${#selectors[@]}" -gt 0 ] || selectors=(berth.test=true)

filters=()
for s in "${selectors[@]}"; do filters+=(--filter "label=$s"); done
what="${selectors[*]}"

docker info >/dev/null 2>&1 || { log "docker is not answering (run scripts/setup.sh)"; exit 1; }

# ids LIST-COMMAND...: the ids it prints, one a line, none when it fails.
ids() { "$@" 2>/dev/null | sed '/^$/d' || true; }

if [ "$(docker info -f '{{.Swarm.ControlAvailable}}' 2>/dev/null || true)" = true ]; then
  mapfile -t found < <(ids docker service ls -q "${filters[@]}")
  if [ "${#found[@]}" -gt 0 ]; then
    log "removing ${#found[@]} service(s) labelled $what"
    docker service rm "${found[@]}" >/dev/null || true
  fi
fi

mapfile -t found < <(ids docker ps -aq "${filters[@]}")
if [ "${#found[@]}" -gt 0 ]; then
  log "removing ${#found[@]} container(s) labelled $what"
  docker rm -f -v "${found[@]}" >/dev/null || true
fi

mapfile -t found < <(ids docker network ls -q "${filters[@]}")
if [ "${#found[@]}" -gt 0 ]; then
  log "removing ${#found[@]} network(s) labelled $what"
  for n in "${found[@]}"; do
    docker network rm "$n" >/dev/null 2>&1 || log "network $n still in use (kept)"
  done
fi

mapfile -t found < <(ids docker volume ls -q "${filters[@]}")
if [ "${#found[@]}" -gt 0 ]; then
  log "removing ${#found[@]} volume(s) labelled $what"
  for v in "${found[@]}"; do
    docker volume rm "$v" >/dev/null 2>&1 || log "volume $v still in use (kept)"
  done
fi

if [ -n "$images" ]; then
  mapfile -t found < <(ids docker image ls -q --no-trunc "${filters[@]}" | sort -u)
  if [ "${#found[@]}" -gt 0 ]; then
    log "removing ${#found[@]} image(s) labelled $what"
    for i in "${found[@]}"; do
      docker image rm -f "$i" >/dev/null 2>&1 || log "image $i still in use (kept)"
    done
  fi
fi
exit 0
