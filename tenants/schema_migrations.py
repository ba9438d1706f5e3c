"""Which schemas are behind the code's migrations, found with one cheap query per 500 schemas.

A schema is current when every migration of the code's graph is recorded in its own
`django_migrations` table. django-tenants records the shared apps' migrations in tenant schemas
too (as no-ops), so every node of the graph is required, exactly as Django's `migrate` would
apply it; a schema that lacks any of them, or has no `django_migrations` table at all, is behind.
`migrate_schemas` uses this to skip current schemas, and `/readyz` to report pending migrations.

A schema found current is recorded in the public schema (`SchemaMigrationRecord`: its oid and the
digest of the code's graph), and a recorded schema is not read again until the code changes: once
every schema was found current, the check is two queries on the public schema, however many
tenants, and on Citus it reaches no worker. Whatever may take a migration away (a `migrate_schemas`
run with a target, `--fake` or `--prune`) forgets the records of the schemas it runs in; a
schema's `django_migrations` changed by hand needs `migrate_schemas --recheck`.

`unusable_schemas` names the tenant schemas nothing can be served from (a name django-tenants
refuses to select, or no such schema): the sweep, `billing_verify`, `export_tenant` and
`migrate_schemas` report those tenants and go on with the others, and `/readyz` leaves them out.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db import DatabaseError, connection
from django.db.migrations.loader import MigrationLoader
from django.utils import timezone
from django_tenants.postgresql_backend.base import is_valid_schema_name
from django_tenants.utils import app_labels, get_public_schema_name

from billing_platform.core.db import SCHEMA_GONE_SQLSTATES, sqlstate
from tenants.models import SchemaMigrationRecord, Tenant, TenantStatus

# Schemas per query: keeps the statement text and its plan small with many thousands of tenants.
CHUNK = 500
_CACHE_PREFIX = "readyz:tenant-migrations"
NEW_SCHEMA_GRACE_SECONDS = 60


@lru_cache(maxsize=1)
def required_migrations() -> tuple[tuple[str, str], ...]:
    """Every migration of the code's graph as (app, name); the code cannot change in a process."""
    loader = MigrationLoader(None, ignore_no_migrations=True)
    return tuple(sorted(loader.graph.nodes))


def graph_digest() -> str:
    """A short fingerprint of the graph, so processes running other code never share a result."""
    text = "\n".join(f"{app}.{name}" for app, name in required_migrations())
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _with_table(schemas: Sequence[str]) -> set[str]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT n.nspname FROM pg_namespace n JOIN pg_class c ON c.relnamespace = n.oid "
            "WHERE c.relname = 'django_migrations' AND c.relkind IN ('r', 'p') "
            "AND n.nspname = ANY(%s)",
            [list(schemas)],
        )
        return {row[0] for row in cursor.fetchall()}


def _missing_in_chunk(
    schemas: Sequence[str], required: Sequence[tuple[str, str]]
) -> dict[str, int]:
    present = _with_table(schemas)
    # No table: nothing recorded, every migration is missing.
    result = {schema: len(required) for schema in schemas if schema not in present}
    queried = [schema for schema in schemas if schema in present]
    if not queried:
        return result
    # Schema names are identifiers, quoted by _quote; every value is a bound parameter.
    parts = [
        f"SELECT %s, (SELECT count(*) FROM required r WHERE NOT EXISTS "  # noqa: S608
        f"(SELECT 1 FROM {_quote(schema)}.django_migrations m "
        f"WHERE m.app = r.app AND m.name = r.name))"
        for schema in queried
    ]
    sql = "WITH required(app, name) AS (SELECT * FROM unnest(%s::text[], %s::text[])) "
    sql += " UNION ALL ".join(parts)
    params: list[Any] = [[app for app, _ in required], [name for _, name in required]]
    params.extend(queried)
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        result.update({schema: int(missing) for schema, missing in cursor.fetchall()})
    return result


def _oids(names: Sequence[str]) -> tuple[dict[str, int], bool]:
    """Each existing schema's oid, and whether the record table exists yet (one query: before
    the public schema's migrations ran, it does not)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT to_regclass(%s) IS NOT NULL, array_agg(nspname::text), array_agg(oid::bigint) "
            "FROM pg_namespace WHERE nspname = ANY(%s)",
            [_record_table(), list(names)],
        )
        exists, found, oids = cursor.fetchone()
    return dict(zip(found or [], oids or [], strict=True)), bool(exists)


def _record_table() -> str:
    return f"{_quote(get_public_schema_name())}.{_quote(SchemaMigrationRecord._meta.db_table)}"


def _recorded_current(oids: dict[str, int]) -> set[str]:
    """Of these schemas, those recorded as holding every migration of this code."""
    with connection.cursor() as cursor:
        # One array parameter, however many schemas (an IN list is bounded by 65,535 parameters).
        cursor.execute(
            f"SELECT schema_oid FROM {_record_table()} "  # noqa: S608 (a quoted identifier)
            "WHERE schema_oid = ANY(%s) AND graph_digest = %s",
            [list(oids.values()), graph_digest()],
        )
        current = {row[0] for row in cursor.fetchall()}
    return {name for name, oid in oids.items() if oid in current}


def _record(oids: Sequence[int]) -> None:
    """Record these schemas as current for this code; drop the records of dropped schemas."""
    if not oids:
        return
    with connection.cursor() as cursor:
        cursor.execute(
            f"DELETE FROM {_record_table()} "  # noqa: S608 (a quoted identifier)
            "WHERE schema_oid <> ALL(ARRAY(SELECT oid::bigint FROM pg_namespace))"
        )
    now = timezone.now()
    digest = graph_digest()
    SchemaMigrationRecord.objects.bulk_create(
        [
            SchemaMigrationRecord(schema_oid=oid, graph_digest=digest, verified_at=now)
            for oid in sorted(set(oids))  # one order everywhere: concurrent upserts never deadlock
        ],
        update_conflicts=True,
        unique_fields=["schema_oid"],
        update_fields=["graph_digest", "verified_at"],
    )


def forget_recorded(schemas: Iterable[str] | None = None) -> None:
    """Drop the records of these schemas (None: of every schema), so the next check reads the
    schemas themselves: after a run that may have taken migrations away (a target migration,
    `--fake`, `--prune`), or a schema's `django_migrations` changed by hand."""
    oids, exists = _oids(list(dict.fromkeys(schemas or [])))
    if not exists:
        return
    with connection.cursor() as cursor:
        if schemas is None:
            cursor.execute(f"DELETE FROM {_record_table()}")  # noqa: S608 (a quoted identifier)
        else:
            cursor.execute(
                f"DELETE FROM {_record_table()} WHERE schema_oid = ANY(%s)",  # noqa: S608
                [list(oids.values())],
            )


def missing_migrations(schemas: Iterable[str], *, recheck: bool = False) -> dict[str, int]:
    """How many of the code's migrations each schema lacks (0: current).

    A schema recorded as current for this code (`SchemaMigrationRecord`) counts as current
    without reading it, unless `recheck`; every schema found current is recorded. So a check
    costs one query on the public schema once every schema was found current, and one query per
    500 schemas for the others.
    """
    required = required_migrations()
    names = list(dict.fromkeys(schemas))
    result: dict[str, int] = {}
    if not names:
        return result
    oids, recording = _oids(names)
    if recording and not recheck:
        for name in _recorded_current(oids):
            result[name] = 0
    for start in range(0, len(names), CHUNK):
        chunk = [name for name in names[start : start + CHUNK] if name not in result]
        if not chunk:
            continue
        try:
            result.update(_missing_in_chunk(chunk, required))
        except DatabaseError as exc:
            # A schema dropped between the two queries: count the whole chunk as behind, so a
            # schema is never skipped on a guess. Any other error (a Citus worker that does not
            # answer, a lost connection) says nothing about migrations and propagates.
            if not connection.get_autocommit() or sqlstate(exc) not in SCHEMA_GONE_SQLSTATES:
                raise
            result.update({schema: len(required) for schema in chunk})
            continue
        if recording:
            _record([oids[name] for name in chunk if not result[name] and name in oids])
    return result


def tenant_schemas(
    *,
    include_spare: bool = True,
    include_template: bool = True,
    created_before: datetime | None = None,
) -> dict[str, int | None]:
    """Every schema `migrate_schemas` migrates after the public one, with its tenant's id (None
    for the template), read in one query: the template first (unless told otherwise), then every
    tenant row (spare schemas included unless told otherwise; with `created_before`, only tenants
    created before then)."""
    public = get_public_schema_name()
    schemas: dict[str, int | None] = {}
    template = getattr(settings, "TENANT_BASE_SCHEMA", None)
    if template and include_template:
        schemas[template] = None
    # A spare being built is being migrated by its builder.
    rows = Tenant.objects.exclude(schema_name=public).exclude(status=TenantStatus.BUILDING)
    if not include_spare:
        rows = rows.exclude(status=TenantStatus.SPARE)
    if created_before is not None:
        rows = rows.filter(created_at__lt=created_before)
    for name, pk in rows.order_by("id").values_list("schema_name", "pk"):
        schemas.setdefault(name, pk)
    return schemas


def tenant_schema_names(
    *,
    include_spare: bool = True,
    include_template: bool = True,
    created_before: datetime | None = None,
) -> list[str]:
    """The names of `tenant_schemas`, in the same order."""
    return list(
        tenant_schemas(
            include_spare=include_spare,
            include_template=include_template,
            created_before=created_before,
        )
    )


@dataclass(frozen=True)
class MigrationStatus:
    public_missing: int
    tenant_schemas_behind: int

    @property
    def pending(self) -> bool:
        return bool(self.public_missing or self.tenant_schemas_behind)


def _cache_key() -> str:
    return f"{_CACHE_PREFIX}:{graph_digest()}"


def tenant_schemas_behind(*, use_cache: bool = True) -> int:
    """How many tenants' schemas lack migrations; cached for READYZ_MIGRATIONS_CACHE_SECONDS.

    Spare schemas and the template are left out: they serve no request (the worker builds
    spares all the time, so one is briefly behind while it is built, and migrates the template
    when behind, which a clone then refuses, building by migrations). So are tenants created in the
    last minute, and schemas that cannot be used at all (`unusable_schemas`: no migration run
    can mend them, and one broken tenant must not take every server out of rotation;
    `migrate_schemas` names them).
    """
    key = _cache_key()
    if use_cache:
        cached = cache.get(key)
        if cached is not None:
            return int(cached)
    behind = sum(1 for missing in missing_migrations(readiness_schema_names()).values() if missing)
    cache.set(key, behind, settings.READYZ_MIGRATIONS_CACHE_SECONDS)
    return behind


def readiness_schema_names() -> list[str]:
    """The schemas `tenant_schemas_behind` checks: every tenant's schema but the spares, the
    template, those of tenants created in the last NEW_SCHEMA_GRACE_SECONDS, and the unusable
    ones. None of the schemas left out counts as behind, nor as current: while none is left, the
    check answers 0 without reading anything."""
    names = tenant_schema_names(
        include_spare=False,
        include_template=False,
        created_before=timezone.now() - timedelta(seconds=NEW_SCHEMA_GRACE_SECONDS),
    )
    unusable = unusable_schemas(names)
    return [name for name in names if name not in unusable]


def _existing_schemas(names: Sequence[str]) -> set[str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT nspname FROM pg_namespace WHERE nspname = ANY(%s)", [list(names)])
        return {row[0] for row in cursor.fetchall()}


INVALID_NAME = "invalid schema name"
NO_SUCH_SCHEMA = "no such schema"


def unusable_schemas(names: Iterable[str]) -> dict[str, str]:
    """Of these schema names, those no tenant can be served from, each with why (one query).

    A name django-tenants refuses to select (a line break, a quote: a slug once accepted with a
    trailing newline), or a schema that does not exist. Such a tenant is broken until an operator
    repairs it by hand.
    """
    names = list(dict.fromkeys(names))
    result = {name: INVALID_NAME for name in names if not is_valid_schema_name(name)}
    valid = [name for name in names if name not in result]
    existing = _existing_schemas(valid) if valid else set()
    result.update({name: NO_SUCH_SCHEMA for name in valid if name not in existing})
    return result


def forget_status() -> None:
    """Drop the cached tenant result (after a migration run), so `/readyz` checks again."""
    cache.delete(_cache_key())


def migration_status(*, use_cache: bool = True) -> MigrationStatus:
    """Pending migrations of the public schema (shared apps) and of the tenant schemas."""
    public = get_public_schema_name()
    shared = set(app_labels(settings.SHARED_APPS))
    public_required = [(app, name) for app, name in required_migrations() if app in shared]
    public_missing = _missing_in_chunk([public], public_required)[public]
    return MigrationStatus(
        public_missing=public_missing,
        tenant_schemas_behind=tenant_schemas_behind(use_cache=use_cache),
    )
