#!/bin/sh
# Run pytest against a fresh test database on the running Citus cluster.
#
#   deploy/citus/pytest.sh [PYTEST ARGS...]     (from the checkout, the cluster started)
#
# pytest-django would create its test database with a plain CREATE DATABASE, which on the
# coordinator gives a database without Citus. So the database (CITUS_TEST_DB, default
# test_billable_citus) is made on every node with the extension and the nodes registered
# (`cluster.sh createdb`), and pytest runs with --reuse-db against it: the migrations then build
# the public schema (Citus-managed tables) and the tenant schemas (distributed schemas) as they
# would in production. The database is dropped first, so every run starts empty.
set -eu
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
DB=${CITUS_TEST_DB:-test_billable_citus}

deploy/citus/cluster.sh dropdb "$DB"
deploy/citus/cluster.sh createdb "$DB" >/dev/null
DATABASE_URL=$(deploy/citus/cluster.sh url)
export DATABASE_URL TEST_DATABASE_NAME="$DB"
port=${DATABASE_URL##*:}  # one cache namespace per cluster, as in e2e.sh
export CACHE_KEY_PREFIX=${CACHE_KEY_PREFIX:-billable-citus-pytest-${port%%/*}}
exec "$PY" -m billing_platform.devserver.launcher exec -- "$PY" -m pytest -p no:warnings --reuse-db "$@"
