#!/bin/sh
# Installs Haraka for the bench's `haraka` target into bench/haraka/.install
# (not a dependency of smtp-receive; gitignored). Needs the npm registry.
set -eu
HERE=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$HERE/.install"
cd "$HERE/.install"
[ -f package.json ] || printf '{ "private": true }\n' > package.json
npm install --no-audit --no-fund Haraka@${HARAKA_VERSION:-3.3.4}
echo "installed: $HERE/.install/node_modules/.bin/haraka"
