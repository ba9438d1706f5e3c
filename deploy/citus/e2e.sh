#!/bin/sh
# `make e2e-citus`: Billable on a private 3-node Citus cluster, end to end (opt-in, as root).
#
# Installs Citus when missing (install.sh), starts a fresh cluster (cluster.sh), migrates the
# public schema and the template, onboards two tenants with the demo catalog (one built from the
# template because the spare pool is empty, one claiming a spare schema built by the pool's
# refill), runs smoke.py against each (grant, consume, balance, wallet, /readyz through Django's
# test client; the ledger refusing UPDATE/DELETE/TRUNCATE on the coordinator and on the worker's
# shard), lists the placement (`manage.py tenant_placement list`), moves the built tenant's schema
# to the other worker (`tenant_placement move`, online), checks every shard moved, runs smoke.py
# against it again (the first run's customer intact, a new grant and consume), rebalances
# (`tenant_placement rebalance`), runs billing_verify, and stops and removes the cluster, also on
# failure.
# Redis and the secrets come from the devserver launcher (`launcher exec`), as for `make test`.
set -eu
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}

say() { echo "[e2e-citus] $*" >&2; }

deploy/citus/install.sh
deploy/citus/cluster.sh stop >/dev/null 2>&1 || true
trap 'deploy/citus/cluster.sh stop' EXIT
trap 'exit 130' INT TERM
DATABASE_URL=$(deploy/citus/cluster.sh start)
export DATABASE_URL
mkdir -p var/static
export CACHE_KEY_PREFIX=${CACHE_KEY_PREFIX:-billable-citus-e2e} SECURE_HTTPS=false
say "coordinator: $DATABASE_URL"

"$PY" -m billing_platform.devserver.launcher exec -- sh -eu -c '
say() { echo "[e2e-citus] $*" >&2; }
PY=$1
say "migrate_schemas --shared"
"$PY" manage.py migrate_schemas --shared --noinput -v 0
say "migrate_schemas (the template schema tenant_template)"
"$PY" manage.py migrate_schemas --noinput -v 0
for slug in built spared; do
    if [ "$slug" = spared ]; then
        say "refilling the spare pool with one schema"
        "$PY" manage.py shell -c "from tenants.services import spare_pool_refill; print(\"spares built:\", spare_pool_refill(target=1))"
    fi
    say "onboard_tenant --slug $slug --demo-catalog"
    start=$(date +%s%N)
    "$PY" manage.py onboard_tenant --name "Citus $slug" --slug "$slug" --demo-catalog > var/citus/onboard-$slug.json
    say "onboarded $slug in $(( ($(date +%s%N) - start) / 1000000 )) ms (the whole command)"
    key=$("$PY" -c "import json,sys; print(json.load(open(sys.argv[1]))[\"api_key\"])" var/citus/onboard-$slug.json)
    schema=$("$PY" -c "import json,sys; print(json.load(open(sys.argv[1]))[\"tenant\"][\"schema_name\"])" var/citus/onboard-$slug.json)
    "$PY" deploy/citus/smoke.py "$key" "$schema"
done
q() { psql -X -At -v ON_ERROR_STOP=1 "$DATABASE_URL" -c "$1"; }
say "tenant_placement list"
"$PY" manage.py tenant_placement list
key=$("$PY" -c "import json,sys; print(json.load(open(sys.argv[1]))[\"api_key\"])" var/citus/onboard-built.json)
ledger="'\''t_built.billable_ledgerentry'\''::regclass"
from=$(q "SELECT nodeport FROM citus_shards WHERE table_name = $ledger")
to=$(q "SELECT nodeid FROM pg_dist_node WHERE groupid <> 0 AND noderole = '\''primary'\'' AND nodeport <> $from ORDER BY nodeid LIMIT 1")
say "tenant_placement move built --to $to (from the worker on port $from)"
start=$(date +%s%N)
"$PY" manage.py tenant_placement move built --to "$to"
say "moved in $(( ($(date +%s%N) - start) / 1000000 )) ms (the whole command)"
"$PY" manage.py tenant_placement list
now=$(q "SELECT string_agg(DISTINCT nodeport::text, '\'','\'') FROM citus_shards WHERE table_name::text LIKE '\''t\\_built.%'\''")
want=$(q "SELECT nodeport FROM pg_dist_node WHERE nodeid = $to")
if [ "$now" != "$want" ]; then say "FAIL: t_built is on port(s) $now after the move, not $want"; exit 1; fi
say "ok: every shard of t_built is on the worker on port $want now"
say "smoke.py against the moved tenant (run 2: run 1'\''s customer must be intact)"
"$PY" deploy/citus/smoke.py "$key" t_built 2
say "tenant_placement rebalance --dry-run, then rebalance"
"$PY" manage.py tenant_placement rebalance --dry-run
"$PY" manage.py tenant_placement rebalance
"$PY" manage.py tenant_placement list
say "billing_verify"
"$PY" manage.py billing_verify
' e2e "$PY"
say "passed"
