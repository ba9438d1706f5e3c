#!/bin/sh
# Stop the private Citus cluster and remove its data (see cluster.sh).
exec "$(dirname "$0")/cluster.sh" stop
