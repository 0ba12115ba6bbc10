#!/usr/bin/env bash
# The project's test command (`npm test`):
#   setup (scripts/setup.sh) -> build -> typecheck -> lint -> unit -> integration
# stopping at the first failure. A header line per stage goes to stderr.
#
#   bash scripts/test.sh                 # every stage
#   bash scripts/test.sh unit lint       # only these stages (in the order above)
#
# Docker objects labelled berth.test=true are removed after the integration
# stage (BERTH_KEEP=1 keeps them for debugging) and, with CI=true, also before
# it: CI reuses the machine's /var/lib/docker, and containers with a restart
# policy come back when dockerd starts. (Outside CI the pre-clean is skipped so
# as not to remove the objects of a test run going on beside this one.)
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

all=(setup build typecheck lint unit integration)
if [ "$#" -gt 0 ]; then
  for s; do
    [[ " ${all[*]} " == *" $s "* ]] || { echo "unknown stage: $s (stages: ${all[*]})" >&2; exit 2; }
  done
fi
selected() { [ "$#" -eq 0 ] || [[ " $* " == *" $stage "* ]]; }

current=
t_all=$SECONDS
on_exit() {
  local rc=$?
  if [ "$cleaned_up" = 1 ] && [ "${BERTH_KEEP:-}" != 1 ]; then
    bash scripts/cleanup.sh berth.test=true || true
  fi
  if [ "$rc" -ne 0 ] && [ -n "$current" ]; then
    printf '\n==> FAILED: %s (exit %s)\n' "$current" "$rc" >&2
  elif [ "$rc" -eq 0 ]; then
    printf '\n==> all stages passed in %s s\n' "$((SECONDS - t_all))" >&2
  fi
}
cleaned_up=0
trap on_exit EXIT

run_stage() {
  current="$1"; shift
  printf '\n==> %s\n' "$current" >&2
  local t0=$SECONDS
  "$@"
  printf '==> %s: ok (%s s)\n' "$current" "$((SECONDS - t0))" >&2
  current=
}

for stage in "${all[@]}"; do
  selected "$@" || continue
  case "$stage" in
    setup)
      run_stage setup bash scripts/setup.sh
      ;;
    build|typecheck|lint)
      run_stage "$stage" npm run -s "$stage"
      ;;
    unit)
      run_stage unit npm run -s test:unit
      run_stage "unit (example apps)" bash -c 'for app in examples/reference-platform/src/*/backend; do
          (cd "$app" && npm ci --offline --no-audit --no-fund --ignore-scripts --loglevel=error && node --test test/) || exit 1
        done'
      ;;
    integration)
      cleaned_up=1
      if [ "${CI:-}" = true ]; then
        bash scripts/cleanup.sh berth.test=true
      fi
      run_stage integration npm run -s test:integration
      ;;
  esac
done
