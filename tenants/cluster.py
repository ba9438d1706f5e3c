"""The public schema on a Citus cluster: tables Citus manages, so changes commit atomically.

On Citus with schema-based sharding a tenant's tables live on a worker, while the public schema's
tables (tenants, keys, the webhook outbox) stay on the coordinator. A request that changes a
tenant's billing and writes its outbox row touches both. When the coordinator's tables are plain
local tables, Citus commits the worker first and the coordinator after, without two-phase
commit: a crash between the two loses the event of a committed change. When they are
*Citus-managed* tables (`citus_add_local_table_to_metadata`), the coordinator's writes count as
writes to a placement and Citus commits with two-phase commit: the worker's part is prepared,
the coordinator commits with a record of it, and Citus's recovery commits or rolls back a prepared
part left behind by a crash by that record (docs/scaling.md).

`citus_manage_public_tables` converts every table of the public schema that Citus does not
manage yet. It runs after each migration of the public schema (`TenantsConfig.ready` connects
it to `post_migrate`), so a table a new migration creates is managed before the first request
writes to it; on plain PostgreSQL it costs one catalogue query and changes nothing.

Converting a table with rows left its identity and serial sequences behind their column's
largest value (duplicate keys at the next insert), so each converted table's sequences are set
past the largest value in the same transaction.
"""

from __future__ import annotations

import logging
from typing import Any

from django.db import connection, transaction
from psycopg import sql

from tenants import selectors

logger = logging.getLogger("billable.tenants")

PUBLIC_SCHEMA = "public"

# Tables of the public schema that Citus has not taken into its metadata: ordinary and
# partitioned tables, not partitions (they follow their parent), not an extension's own.
_UNMANAGED_SQL = """
SELECT c.oid::regclass::text
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = %s AND c.relkind IN ('r', 'p') AND NOT c.relispartition
  AND NOT EXISTS (SELECT 1 FROM pg_dist_partition p WHERE p.logicalrelid = c.oid)
  AND NOT EXISTS (
      SELECT 1 FROM pg_depend d
      WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e'
  )
ORDER BY 1
"""

# The sequences feeding a table's columns (identity or serial default).
_SEQUENCES_SQL = """
SELECT a.attname, pg_get_serial_sequence(%s, a.attname)
FROM pg_attribute a
WHERE a.attrelid = %s::regclass AND a.attnum > 0 AND NOT a.attisdropped
  AND pg_get_serial_sequence(%s, a.attname) IS NOT NULL
"""


class CoordinatorNotRegistered(Exception):
    """Citus cannot manage the coordinator's tables before the coordinator is a node."""

    def __init__(self) -> None:
        super().__init__(
            "the Citus coordinator is not in its own metadata: run "
            "SELECT citus_set_coordinator_host('<host>', <port>) on it once (docs/scaling.md), "
            "then migrate again"
        )


def _unmanaged(cursor: Any) -> list[str]:
    cursor.execute(_UNMANAGED_SQL, [PUBLIC_SCHEMA])
    return [row[0] for row in cursor.fetchall()]


def sequences_reset(cursor: Any, table: str) -> None:
    """Set each sequence of `table` past its column's largest value (no-op on an empty table)."""
    cursor.execute(_SEQUENCES_SQL, [table, table, table])
    for column, sequence in cursor.fetchall():
        # `table` is a regclass's text, quoted by the catalogue already
        statement = sql.SQL(
            "SELECT setval(%s, max({column})) FROM {table} HAVING max({column}) IS NOT NULL"
        ).format(column=sql.Identifier(column), table=sql.SQL(table))
        cursor.execute(statement, [sequence])


def citus_manage_public_tables() -> list[str]:
    """Make every table of the public schema Citus-managed; the names converted, in order.

    Returns [] at once on plain PostgreSQL. Tables joined by foreign keys are converted together
    (`cascade_via_foreign_keys`), as Citus requires. Raises CoordinatorNotRegistered when the
    coordinator is not a node of its own cluster yet.
    """
    if not selectors.citus_enabled():
        return []
    converted: list[str] = []
    with transaction.atomic(), connection.cursor() as cursor:
        pending = _unmanaged(cursor)
        if pending:
            cursor.execute("SELECT 1 FROM pg_dist_node WHERE groupid = 0")
            if cursor.fetchone() is None:
                raise CoordinatorNotRegistered()
        while pending:
            table = pending[0]
            cursor.execute(
                "SELECT citus_add_local_table_to_metadata(%s::regclass, "
                "cascade_via_foreign_keys => true)",
                [table],
            )
            still = _unmanaged(cursor)
            converted.extend(name for name in pending if name not in still)
            if table in still:  # Citus answered without managing it: do not loop forever
                raise RuntimeError(f"Citus did not take {table} into its metadata")
            pending = still
        for table in converted:
            sequences_reset(cursor, table)
    if converted:
        logger.info("citus: %d public tables are Citus-managed now", len(converted))
    return converted


def manage_public_tables_after_migrate(sender: Any, **kwargs: Any) -> None:
    """`post_migrate` receiver: convert what a migration of the public schema created."""
    if getattr(connection, "schema_name", PUBLIC_SCHEMA) != PUBLIC_SCHEMA:
        return
    converted = citus_manage_public_tables()
    stdout = kwargs.get("stdout")
    if converted and stdout is not None and kwargs.get("verbosity", 1) >= 1:
        stdout.write(f"  Citus-managed public tables: {len(converted)} converted\n")
