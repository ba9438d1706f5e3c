#!/bin/sh
# `make e2e-citus`: Billable on a private 3-node Citus cluster, end to end (opt-in, as root).
#
# Installs Citus when missing (install.sh), starts a fresh cluster (cluster.sh), then:
#  (the tenants are onboarded without a rate limit: the load of step 2 is not what a limit is for)
#  1. migrates the public schema (its tables become Citus-managed) and the template, onboards two
#     tenants with the demo catalog (one built from the template because the spare pool is
#     empty, one claiming a spare schema built by the pool's refill) and runs smoke.py against
#     each (grant, consume, balance, wallet, /readyz; the ledger refusing UPDATE/DELETE/TRUNCATE
#     on the coordinator and on the worker's shard);
#  2. `tenant_placement list`, then moves the built tenant's schema to the other worker under
#     consume load (move_under_load.py: every consume answered 200, none lost or doubled), runs
#     smoke.py against it again (run 1's customer intact), and rebalances;
#  3. stops the worker holding the built tenant and starts it again (worker_down.py: /readyz
#     `degraded`, not "schemas behind the code"; `billable_citus_node_up`);
#  4. restores the spared tenant's schema from itself (`manage.py restore_tenant`, suspended
#     first) and runs smoke.py against it (run 1's customer intact, new rows insert);
#  5. runs the pytest suites that touch the outbox and the idempotency records, and the e2e
#     suite, against a test database on the cluster (pytest.sh; CITUS_PYTEST_ARGS overrides);
#  6. billing_verify; then crash.py: the coordinator killed (gdb) between the worker's PREPARE
#     and its own commit, and between its commit and COMMIT PREPARED: after recovery the consume
#     and its event both exist or neither; billing_verify again;
# and stops and removes the cluster, also on failure.
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
CITUS_DIR=${CITUS_DIR:-var/citus}
export CITUS_DIR  # the cluster's directory, also for the onboarding results below
mkdir -p var/static
# One cache namespace per cluster (its coordinator's port): the Redis on the standard port may be
# shared with another cluster's run, whose cached /readyz result would otherwise answer for ours.
port=${DATABASE_URL##*:}
export CACHE_KEY_PREFIX=${CACHE_KEY_PREFIX:-billable-citus-e2e-${port%%/*}} SECURE_HTTPS=false
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
    "$PY" manage.py onboard_tenant --name "Citus $slug" --slug "$slug" --demo-catalog --rate-limit 0 > "$CITUS_DIR"/onboard-$slug.json
    say "onboarded $slug in $(( ($(date +%s%N) - start) / 1000000 )) ms (the whole command)"
    key=$("$PY" -c "import json,sys; print(json.load(open(sys.argv[1]))[\"api_key\"])" "$CITUS_DIR"/onboard-$slug.json)
    schema=$("$PY" -c "import json,sys; print(json.load(open(sys.argv[1]))[\"tenant\"][\"schema_name\"])" "$CITUS_DIR"/onboard-$slug.json)
    "$PY" deploy/citus/smoke.py "$key" "$schema"
done
q() { psql -X -At -v ON_ERROR_STOP=1 "$DATABASE_URL" -c "$1"; }
say "tenant_placement list"
"$PY" manage.py tenant_placement list
key=$("$PY" -c "import json,sys; print(json.load(open(sys.argv[1]))[\"api_key\"])" "$CITUS_DIR"/onboard-built.json)
ledger="'\''t_built.billable_ledgerentry'\''::regclass"
from=$(q "SELECT nodeport FROM citus_shards WHERE table_name = $ledger")
to=$(q "SELECT nodeid FROM pg_dist_node WHERE groupid <> 0 AND noderole = '\''primary'\'' AND nodeport <> $from ORDER BY nodeid LIMIT 1")
say "moving t_built to node $to (from the worker on port $from) under consume load"
"$PY" deploy/citus/move_under_load.py "$key" t_built "$to"
"$PY" manage.py tenant_placement list
say "smoke.py against the moved tenant (run 2: run 1'\''s customer must be intact)"
"$PY" deploy/citus/smoke.py "$key" t_built 2
say "tenant_placement rebalance --dry-run, then rebalance"
"$PY" manage.py tenant_placement rebalance --dry-run
"$PY" manage.py tenant_placement rebalance
"$PY" manage.py tenant_placement list
say "a worker down and back: /readyz and the metrics"
"$PY" deploy/citus/worker_down.py deploy/citus/cluster.sh t_built
say "restore_tenant spared from its own schema (suspended first)"
status() { "$PY" manage.py shell -c "from tenants.models import Tenant; from tenants import resolution; t = Tenant.objects.get(slug=\"spared\"); Tenant.objects.filter(pk=t.pk).update(status=\"$1\"); resolution.invalidate_tenant(t)"; }
status suspended
"$PY" manage.py restore_tenant spared --from "$DATABASE_URL"
status active
skey=$("$PY" -c "import json,sys; print(json.load(open(sys.argv[1]))[\"api_key\"])" "$CITUS_DIR"/onboard-spared.json)
"$PY" deploy/citus/smoke.py "$skey" t_spared 2
psql -X -q -v ON_ERROR_STOP=1 "$DATABASE_URL" -c "DROP SCHEMA t_spared_before_restore CASCADE"
say "billing_verify"
"$PY" manage.py billing_verify
' e2e "$PY"

say "pytest on the cluster: ${CITUS_PYTEST_ARGS:=tests/e2e tests/billing_platform/webhooks tests/billable/test_api_idempotency.py tests/billing_platform/operations}"
# shellcheck disable=SC2086  # a list of arguments
PY="$PY" deploy/citus/pytest.sh -q -p no:randomly $CITUS_PYTEST_ARGS

say "crash.py: the coordinator killed in the middle of the two-phase commit"
command -v gdb >/dev/null 2>&1 || {
    say "installing gdb"; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq gdb >/dev/null; }
"$PY" -m billing_platform.devserver.launcher exec -- sh -eu -c '
PY=$1
key=$("$PY" -c "import json,sys; print(json.load(open(sys.argv[1]))[\"api_key\"])" "$CITUS_DIR"/onboard-spared.json)
"$PY" deploy/citus/crash.py "$key" t_spared
"$PY" manage.py billing_verify
' e2e "$PY"
say "passed"
