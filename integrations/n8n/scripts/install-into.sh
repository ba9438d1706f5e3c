#!/bin/sh
# Installs this package into DEST as n8n installs a community node package: DEST is an n8n
# `nodes` folder (<N8N_USER_FOLDER>/.n8n/nodes), holding package.json and
# node_modules/n8n-nodes-billable. n8n loads every n8n-nodes-* package there at start, under the
# package's name: n8n-nodes-billable.billable, n8n-nodes-billable.billableTrigger.
#
# Built from a copy of this directory (the source is left as it is): `npm ci` from the lock file
# (no install scripts: .npmrc), `npm run build`, `npm pack` as npm publishes it, then `npm install`
# of the tarball into DEST (emptied first) without n8n-workflow, which n8n provides
# (--legacy-peer-deps). Used by deploy/compose.yaml (the n8n-node service, DEST its volume, which
# n8n-local mounts at /home/node/.n8n/nodes) and tests/e2e_n8n/test_compose_node.py.
#
# Usage: sh integrations/n8n/scripts/install-into.sh DEST
set -eu
[ $# -eq 1 ] || { echo "usage: $0 DEST" >&2; exit 2; }
dest=$1
src=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir "$work/build" "$work/pack"
(cd "$src" && tar -cf - --exclude=./node_modules --exclude=./dist --exclude='./*.tgz' .) \
  | (cd "$work/build" && tar -xf -)
cd "$work/build"
npm ci --no-audit --no-fund
npm run build
npm pack --pack-destination "$work/pack"
mkdir -p "$dest"
find "$dest" -mindepth 1 -maxdepth 1 -exec rm -rf {} +
printf '%s\n' '{"name": "installed-nodes", "private": true}' > "$dest/package.json"
cd "$dest"
npm install "$work"/pack/n8n-nodes-billable-*.tgz --legacy-peer-deps --ignore-scripts \
  --no-audit --no-fund
test -f node_modules/n8n-nodes-billable/package.json
