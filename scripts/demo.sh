#!/usr/bin/env bash
# Brings up the reference platform on this machine: the README's first command.
# Idempotent: a second run converges (and says there is nothing to change).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

[ -d node_modules ] || npm ci --no-audit --no-fund
bash scripts/setup.sh
npm run -s build
./bin/berth apply examples/reference-platform "$@"

cat >&2 <<'MSG'

The reference platform runs. Try:
  curl -H 'Host: paiss.localhost' http://127.0.0.1:8080/
  curl -k https://paiss.localhost:8443/                        # self-signed certificate
  curl -k https://filter-ical.localhost:8443/api/filters
  curl -k -X POST -H 'content-type: application/json' -d '{"name":"work","pattern":"standup"}' https://filter-ical.localhost:8443/api/filters
  curl -k https://staging.gabs-massage.localhost:8443/          # a visit counter kept in its own database
  ./bin/berth plan examples/reference-platform                  # what runs, and why
  ./bin/berth down examples/reference-platform                  # stop it (data is kept)
MSG
