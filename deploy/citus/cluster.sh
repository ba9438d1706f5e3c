#!/bin/sh
# A private 3-node Citus cluster (coordinator + 2 workers) for trying Billable on Citus.
#
#   deploy/citus/cluster.sh start    # create (first time) and start it; prints the coordinator URL
#   deploy/citus/cluster.sh url      # the coordinator's URL (when running)
#   deploy/citus/cluster.sh status
#   deploy/citus/cluster.sh createdb NAME   # one more database on every node, with Citus and
#                                           # the nodes registered (pytest's --reuse-db test database)
#   deploy/citus/cluster.sh dropdb NAME
#   deploy/citus/cluster.sh stop-node worker1   # stop one node, keeping its data; start-node
#                                                # brings it back (a worker failure, by hand)
#   deploy/citus/cluster.sh stop     # stop it and remove its data (deploy/citus/stop.sh does the same)
#
# Data, sockets and logs live under var/citus/ (CITUS_DIR overrides) in the checkout. The nodes
# run Debian's PostgreSQL 15 binaries as an unprivileged user (CITUS_USER, default postgres, when
# run as root), listen on 127.0.0.1 only, on free ports chosen when the cluster is created, with
# trust authentication for 127.0.0.1. Every node has `shared_preload_libraries = 'citus'`,
# `citus.enable_schema_based_sharding = on` and the extension in the database (CITUS_DB, default
# billable); the workers have `wal_level = logical` (online schema moves).
# `start` on a running cluster only prints its URL. Citus must be installed (deploy/citus/install.sh).
set -eu

PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
CITUS_DIR=${CITUS_DIR:-var/citus}
CITUS_DB=${CITUS_DB:-billable}
CITUS_USER=${CITUS_USER:-postgres}
NODES="coordinator worker1 worker2"

say() { echo "[citus-cluster] $*" >&2; }

mkdir -p "$CITUS_DIR"
CITUS_DIR=$(cd "$CITUS_DIR" && pwd)

as_user() {
    if [ "$(id -u)" = 0 ]; then
        runuser -u "$CITUS_USER" -- "$@"
    else
        "$@"
    fi
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

port_of() { cat "$CITUS_DIR/$1/port"; }

psql_on() {  # psql_on NODE DATABASE SQL
    PGOPTIONS="-c client_min_messages=warning" as_user "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -At -h 127.0.0.1 -p "$(port_of "$1")" \
        -U postgres -d "$2" -c "$3"
}

running() { as_user "$PG_BIN/pg_ctl" -D "$CITUS_DIR/$1/data" status >/dev/null 2>&1; }

url() { echo "postgres://postgres@127.0.0.1:$(port_of coordinator)/$CITUS_DB"; }

init_node() {
    node=$1
    dir=$CITUS_DIR/$node
    [ -f "$dir/data/PG_VERSION" ] && return 0
    mkdir -p "$dir"
    [ "$(id -u)" = 0 ] && chown "$CITUS_USER" "$dir"
    port=$(free_port)
    say "initdb $node ($dir/data, port $port)"
    as_user "$PG_BIN/initdb" -D "$dir/data" -U postgres --auth-local=trust --auth-host=reject \
        -E UTF8 --no-sync >"$dir/initdb.log" 2>&1 || { cat "$dir/initdb.log" >&2; exit 1; }
    {
        echo "# Written by deploy/citus/cluster.sh"
        echo "port = $port"
        echo "listen_addresses = '127.0.0.1'"
        echo "unix_socket_directories = '$dir'"
        echo "shared_preload_libraries = 'citus'"
        echo "citus.enable_schema_based_sharding = on"
        echo "max_connections = 200"
        case $node in worker*) echo "wal_level = logical" ;; esac
    } >>"$dir/data/postgresql.conf"
    # trust for 127.0.0.1 only (and the node's own socket); everything else is refused
    printf '%s\n' "local all all trust" "host all all 127.0.0.1/32 trust" >"$dir/data/pg_hba.conf"
    echo "$port" >"$dir/port"
}

start_node() {
    node=$1
    dir=$CITUS_DIR/$node
    if running "$node"; then
        return 0
    fi
    if python3 -c "import socket,sys; s=socket.socket(); sys.exit(s.connect_ex(('127.0.0.1', $(port_of "$node"))) != 0)"; then
        say "port $(port_of "$node") of $node is taken by another process: run '$0 stop' and start again"
        exit 1
    fi
    as_user "$PG_BIN/pg_ctl" -D "$dir/data" -l "$dir/postgres.log" -w -t 60 start >/dev/null \
        || { tail -20 "$dir/postgres.log" >&2; exit 1; }
    say "$node running on 127.0.0.1:$(port_of "$node")"
}

setup_database() {  # setup_database NAME: the database on every node, with Citus and the nodes
    db=$1
    for node in $NODES; do
        if [ -z "$(psql_on "$node" postgres "SELECT 1 FROM pg_database WHERE datname = '$db'")" ]; then
            psql_on "$node" postgres "CREATE DATABASE $db"
        fi
        psql_on "$node" "$db" "CREATE EXTENSION IF NOT EXISTS citus"
    done
    psql_on coordinator "$db" \
        "SELECT citus_set_coordinator_host('127.0.0.1', $(port_of coordinator))" >/dev/null
    for node in worker1 worker2; do
        # citus_add_node returns the existing node's id when it is registered already
        psql_on coordinator "$db" "SELECT citus_add_node('127.0.0.1', $(port_of "$node"))" >/dev/null
    done
}

createdb() {  # a further database set up like the first (a test database for pytest --reuse-db)
    case ${1:-} in
        ''|*[!a-z0-9_]*) say "createdb NAME: lower-case letters, digits and _ only"; exit 2 ;;
    esac
    running coordinator || { say "not running: start it first"; exit 1; }
    setup_database "$1"
    echo "postgres://postgres@127.0.0.1:$(port_of coordinator)/$1"
}

dropdb() {  # drop a database made by createdb on every node
    running coordinator || { say "not running"; exit 1; }
    for node in $NODES; do
        psql_on "$node" postgres "DROP DATABASE IF EXISTS $1 WITH (FORCE)"
    done
}

start() {
    if [ ! -f "$PG_BIN/../lib/citus.so" ]; then
        say "Citus is not installed ($PG_BIN/../lib/citus.so): run deploy/citus/install.sh"
        exit 1
    fi
    [ "$(id -u)" = 0 ] && chown "$CITUS_USER" "$CITUS_DIR"
    for node in $NODES; do init_node "$node"; done
    for node in $NODES; do start_node "$node"; done
    setup_database "$CITUS_DB"
    say "nodes: $(psql_on coordinator "$CITUS_DB" "SELECT string_agg(nodename || ':' || nodeport || ' (group ' || groupid || ')', ', ' ORDER BY groupid) FROM pg_dist_node")"
    url
}

stop() {
    for node in $NODES; do
        if [ -d "$CITUS_DIR/$node/data" ] && running "$node"; then
            as_user "$PG_BIN/pg_ctl" -D "$CITUS_DIR/$node/data" -m fast -w stop >/dev/null
            say "$node stopped"
        fi
    done
    rm -rf "$CITUS_DIR"
    say "removed $CITUS_DIR"
}

status() {
    for node in $NODES; do
        if [ -d "$CITUS_DIR/$node/data" ] && running "$node"; then
            echo "$node: running on 127.0.0.1:$(port_of "$node")"
        else
            echo "$node: not running"
        fi
    done
}

case ${1:-} in
    start) start ;;
    stop) stop ;;
    status) status ;;
    createdb) createdb "${2:-}" ;;
    stop-node)  # stop one node, keeping its data (a worker failure); start-node brings it back
        as_user "$PG_BIN/pg_ctl" -D "$CITUS_DIR/${2:?stop-node NAME}/data" -m fast -w stop >/dev/null
        say "$2 stopped" ;;
    start-node) start_node "${2:?start-node NAME}" ;;
    dropdb) dropdb "${2:?dropdb NAME}" ;;
    url) running coordinator && url || { say "not running"; exit 1; } ;;
    *) echo "usage: $0 start|stop|status|url|createdb NAME|dropdb NAME|stop-node NAME|start-node NAME" >&2; exit 2 ;;
esac
