"""Restore one tenant's schema from a copy of it in another database (a scratch restore of a
backup), the same way on plain PostgreSQL and on a Citus cluster.

`pg_restore` of a tenant's schema straight into the platform's database fails on Citus (the
dump adds identity columns and constraints with `ALTER TABLE`, which Citus refuses on the
distributed tables of a distributed schema). So the platform builds the new schema itself and
copies the rows into it:

1. the tenant must be suspended (the API and the webhooks stop while its schema changes);
2. the source schema must record exactly the code's migrations (migrate the scratch copy first
   otherwise): the tables and their columns are then the same on both sides;
3. `<schema>_restoring` is cloned from the template (one transaction; on Citus a distributed
   schema, with the ledger's append-only triggers), and every table's rows are copied from the
   source with `COPY … (FORMAT BINARY)`, streamed, in one transaction, each table's sequences
   set past its largest key; a failure drops `<schema>_restoring` and leaves the tenant as it was;
4. in one transaction the tenant's schema becomes `<schema>_before_restore` and
   `<schema>_restoring` becomes the tenant's schema (renames keep a Citus schema's placement);
   the cached key resolutions of the tenant are dropped.

The public rows of the tenant (keys, endpoints, settings) are not touched (docs/operations.md).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import psycopg
from django.db import connection, transaction
from psycopg import sql

from billing_platform.core.db import reset_to_public
from billing_platform.core.errors import Conflict
from tenants import resolution
from tenants.cluster import sequences_reset
from tenants.models import Tenant, TenantStatus
from tenants.schema_clone import TemplateUnavailable, schema_clone
from tenants.schema_migrations import required_migrations

logger = logging.getLogger("billable.tenants")

RESTORING_SUFFIX = "_restoring"
BEFORE_SUFFIX = "_before_restore"
# Tables every tenant schema has that are not the tenant's data.
_SKIPPED = frozenset({"django_migrations"})


class RestoreRefused(Conflict):
    code = "restore_refused"
    title = "Restore refused"


@dataclass(frozen=True)
class RestoreResult:
    schema: str
    kept_as: str
    rows: dict[str, int]


def _qualified(schema: str, table: str) -> str:
    return f"{connection.ops.quote_name(schema)}.{connection.ops.quote_name(table)}"


def _tables(cursor: Any, schema: str) -> list[str]:
    cursor.execute(
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = %s AND c.relkind IN ('r', 'p') AND NOT c.relispartition "
        "ORDER BY c.relname",
        [schema],
    )
    return [row[0] for row in cursor.fetchall() if row[0] not in _SKIPPED]


def _columns(cursor: Any, schema: str, table: str) -> list[str]:
    cursor.execute(
        "SELECT a.attname FROM pg_attribute a WHERE a.attrelid = %s::regclass AND a.attnum > 0 "
        "AND NOT a.attisdropped AND a.attgenerated = '' ORDER BY a.attnum",
        [_qualified(schema, table)],
    )
    return [row[0] for row in cursor.fetchall()]


def _schema_exists(cursor: Any, schema: str) -> bool:
    cursor.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", [schema])
    return cursor.fetchone() is not None


def _check_source(source: psycopg.Connection[Any], schema: str) -> None:
    with source.cursor() as cursor:
        if not _schema_exists(cursor, schema):
            raise RestoreRefused(f"The source database has no schema {schema!r}.")
        cursor.execute(
            sql.SQL("SELECT app, name FROM {}").format(sql.Identifier(schema, "django_migrations"))
        )
        recorded = {(app, name) for app, name in cursor.fetchall()}
    required = set(required_migrations())
    if recorded != required:
        missing, extra = len(required - recorded), len(recorded - required)
        raise RestoreRefused(
            f"The source schema {schema!r} does not record the code's migrations "
            f"({missing} missing, {extra} unknown): migrate the scratch copy to this code "
            "first (DATABASE_URL=<scratch> manage.py migrate_schemas), then restore."
        )


def _drop_schema(schema: str) -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema))
        )


def tenant_restore(*, tenant: Tenant, source_url: str, source_schema: str = "") -> RestoreResult:
    """Replace the suspended tenant's schema with the rows of `source_schema` (default: the
    tenant's own schema name) in the database at `source_url`; see the module docstring.

    Raises RestoreRefused (409) when the tenant is not suspended, the source schema is missing
    or not at the code's migrations, a `_restoring` or `_before_restore` schema is in the way,
    or there is no current template to build from. Must run outside any transaction.
    """
    if not transaction.get_autocommit():
        raise RuntimeError("A tenant schema cannot be restored inside a transaction.")
    reset_to_public()
    tenant = Tenant.objects.get(pk=tenant.pk)
    if tenant.status != TenantStatus.SUSPENDED:
        raise RestoreRefused(
            f"Tenant {tenant.slug!r} is {tenant.status}: suspend it first, so no request or "
            "webhook uses its schema while it is replaced."
        )
    schema = tenant.schema_name
    source_schema = source_schema or schema
    restoring, before = schema + RESTORING_SUFFIX, schema + BEFORE_SUFFIX
    with connection.cursor() as cursor:
        for name in (restoring, before):
            if _schema_exists(cursor, name):
                raise RestoreRefused(
                    f"Schema {name!r} exists (an earlier restore): drop it, then restore."
                )
    rows: dict[str, int] = {}
    with psycopg.connect(source_url, autocommit=True) as source:
        # One snapshot of the source for every table, and nothing written there.
        source.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        source.read_only = True
        _check_source(source, source_schema)
        try:
            with transaction.atomic():
                schema_clone(target=restoring)
        except TemplateUnavailable as exc:
            raise RestoreRefused(
                f"No current template to build the schema from ({exc}): run migrate_schemas."
            ) from exc
        try:
            with source.transaction(), transaction.atomic(), connection.cursor() as cursor:
                raw = connection.connection  # Django's psycopg connection, in the transaction
                with source.cursor() as reader:
                    for table in _tables(cursor, restoring):
                        columns = _columns(cursor, restoring, table)
                        names = sql.SQL(", ").join(map(sql.Identifier, columns))
                        copy_out = sql.SQL(
                            "COPY (SELECT {} FROM {}) TO STDOUT (FORMAT BINARY)"
                        ).format(names, sql.Identifier(source_schema, table))
                        copy_in = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(
                            sql.Identifier(restoring, table), names
                        )
                        with raw.cursor() as writer, reader.copy(copy_out) as out, \
                                writer.copy(copy_in) as into:
                            for chunk in out:
                                into.write(chunk)
                        cursor.execute(
                            sql.SQL("SELECT count(*) FROM {}").format(
                                sql.Identifier(restoring, table)
                            )
                        )
                        rows[table] = int(cursor.fetchone()[0])
                        sequences_reset(cursor, _qualified(restoring, table))
        except BaseException:
            _drop_schema(restoring)
            raise
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            sql.SQL("ALTER SCHEMA {} RENAME TO {}").format(
                sql.Identifier(schema), sql.Identifier(before)
            )
        )
        cursor.execute(
            sql.SQL("ALTER SCHEMA {} RENAME TO {}").format(
                sql.Identifier(restoring), sql.Identifier(schema)
            )
        )
    resolution.invalidate_tenant(tenant)
    logger.info("tenant %s restored from %s (%d rows); the old schema is %s",
                tenant.slug, source_schema, sum(rows.values()), before)
    return RestoreResult(schema=schema, kept_as=before, rows=rows)
