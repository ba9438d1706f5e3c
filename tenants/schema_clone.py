"""The template schema, and new tenant schemas cloned from it in one transaction.

The template (`TENANT_BASE_SCHEMA`, default `tenant_template`) is an empty schema migrated like
every tenant schema: `migrate_schemas` creates it when absent and migrates it first, and the
worker's refill does the same if it finds it missing or behind. It has no `Tenant` row, so no key
reaches it and the sweep, `billing_verify` and `export_tenant` never visit it.

`schema_clone` copies its structure from the catalogs: tables (`LIKE … INCLUDING ALL EXCLUDING
INDEXES`: columns, defaults, identity columns with fresh sequences, checks, comments), then the
functions, the primary, unique and exclusion constraints and the foreign keys under their own
names and with their deferrability, the other indexes, the triggers, and the `django_migrations`
rows with their sequence's position, so `migrate_schemas` sees the clone current. No other data
is copied: every other sequence of the clone starts afresh, whatever the template's.

django-tenants' own `CloneSchema` (pg-clone-schema) is not used: it renames every named UNIQUE
constraint to PostgreSQL's default name (`identity_unique` becomes
`billable_externalidentity_provider_external_id_key`, so a later `RemoveConstraint` would fail in
cloned schemas), reinstalls its 4,600-line function with `DROP TYPE … CASCADE` on every call
(racing concurrent clones), and takes ~0.3 s where this takes a fraction of that.

A clone holds the template's advisory lock shared until its transaction ends, and reads the
catalogs and `django_migrations` under it; creating or migrating the template holds it
exclusively (`template_migrate`, and `migrate_schemas` whatever its executor), so a clone never
reads a template half-migrated, nor records a migration whose objects it lacks. (A REPEATABLE
READ snapshot would not do: `pg_get_*def` read the catalogs as of now, not as of the snapshot.)
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from django.conf import settings
from django.core.management import call_command
from django.db import connection
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.backends.utils import CursorWrapper
from django_tenants.utils import schema_exists

from tenants.schema_migrations import missing_migrations

# Relation kinds a clone can copy: tables, indexes, sequences (of identity columns).
_CLONABLE_RELKINDS = ("r", "i", "S")
# The only table whose rows are copied: which migrations the schema has.
_MIGRATIONS_TABLE = "django_migrations"
TEMPLATE_LOCK_ID = int.from_bytes(
    hashlib.blake2b(b"tenant-template", digest_size=8).digest(), "big", signed=True
)


class TemplateUnavailable(Exception):
    """The template cannot be cloned now (missing, behind the code, or holding what a clone
    cannot copy): build by migrations instead."""


def template_schema() -> str | None:
    """The template's schema name, or None when cloning is turned off."""
    return getattr(settings, "TENANT_BASE_SCHEMA", None) or None


_lock_held: ContextVar[bool] = ContextVar("template_lock_held", default=False)


def template_lock_held() -> bool:
    """Whether this thread already holds the template's lock (on a connection of its own): a
    migration of the template run from inside `template_locked` must not wait for it again."""
    return _lock_held.get()


@contextmanager
def template_locked(holder: BaseDatabaseWrapper) -> Iterator[None]:
    """Hold the template's lock exclusively on `holder` (a connection migrations leave alone)."""
    with holder.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_lock(%s)", [TEMPLATE_LOCK_ID])
    token = _lock_held.set(True)
    try:
        yield
    finally:
        _lock_held.reset(token)
        with holder.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock(%s)", [TEMPLATE_LOCK_ID])


def template_migrate(holder: BaseDatabaseWrapper) -> bool:
    """Create the template if absent and migrate it if behind; True when it was changed.

    Must run outside any transaction (django-tenants commits and reconnects while migrating).
    """
    template = template_schema()
    if template is None:
        return False
    with template_locked(holder):
        if schema_exists(template) and not missing_migrations([template])[template]:
            return False
        with connection.cursor() as cursor:
            cursor.execute(f"CREATE SCHEMA IF NOT EXISTS {connection.ops.quote_name(template)}")
        call_command(
            "migrate_schemas", tenant=True, schema_name=template, interactive=False, verbosity=0
        )
        connection.set_schema_to_public()  # type: ignore[attr-defined]
    return True


def _rows(cursor: CursorWrapper, sql: str, params: list[Any]) -> list[tuple[Any, ...]]:
    cursor.execute(sql, params)
    return list(cursor.fetchall())


def _retarget(definition: str, keyword: str, source: str, target: str) -> str:
    """Point `<keyword> source.` (the schema-qualified name of a definition) at `target`; an
    unqualified name is left to the search_path, which is `target` when the DDL runs."""
    return definition.replace(f"{keyword} {source}.", f"{keyword} {target}.", 1)


def _unsupported(cursor: CursorWrapper, oid: int) -> list[str]:
    """What the template holds that a clone would not copy (then it refuses to clone)."""
    return [
        row[0]
        for row in _rows(
            cursor,
            "SELECT 'relation ' || relname FROM pg_class WHERE relnamespace = %s "
            "AND relkind <> ALL(%s) "
            "UNION ALL SELECT 'sequence ' || c.relname FROM pg_class c WHERE c.relnamespace = %s "
            "AND c.relkind = 'S' AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = c.oid "
            "AND d.classid = 'pg_class'::regclass AND d.deptype = 'i') "
            "UNION ALL SELECT 'type ' || typname FROM pg_type WHERE typnamespace = %s "
            "AND typtype IN ('d', 'e', 'r', 'm') "
            "UNION ALL SELECT 'routine ' || proname FROM pg_proc WHERE pronamespace = %s "
            "AND prokind <> 'f' "
            "UNION ALL SELECT 'trigger ' || tgname FROM pg_trigger t JOIN pg_class c "
            "ON c.oid = t.tgrelid WHERE c.relnamespace = %s AND NOT t.tgisinternal "
            "AND t.tgenabled <> 'O' "
            "UNION ALL SELECT 'policy ' || polname FROM pg_policy p JOIN pg_class c "
            "ON c.oid = p.polrelid WHERE c.relnamespace = %s "
            "UNION ALL SELECT 'rule ' || rulename FROM pg_rules WHERE schemaname = "
            "(SELECT nspname FROM pg_namespace WHERE oid = %s) "
            # An extension's members belong to the extension: a copy would be no member.
            "UNION ALL SELECT 'extension member ' || pg_describe_object(d.classid, d.objid, 0) "
            "FROM pg_depend d WHERE d.deptype = 'e' AND ("
            "(d.classid = 'pg_class'::regclass AND d.objid IN "
            "(SELECT oid FROM pg_class WHERE relnamespace = %s)) "
            "OR (d.classid = 'pg_proc'::regclass AND d.objid IN "
            "(SELECT oid FROM pg_proc WHERE pronamespace = %s)) "
            "OR (d.classid = 'pg_type'::regclass AND d.objid IN "
            "(SELECT oid FROM pg_type WHERE typnamespace = %s))) "
            # A function naming the template (in its body or its SET search_path) would keep
            # reaching into the template from the clone.
            "UNION ALL SELECT 'function naming the template ' || p.proname FROM pg_proc p "
            "JOIN pg_namespace n ON n.oid = p.pronamespace WHERE p.pronamespace = %s "
            "AND (strpos(lower(coalesce(p.prosrc, '')), n.nspname) > 0 "
            "OR strpos(lower(coalesce(array_to_string(p.proconfig, ' '), '')), n.nspname) > 0)",
            [oid, list(_CLONABLE_RELKINDS), oid, oid, oid, oid, oid, oid, oid, oid, oid, oid],
        )
    ]


def _clone_statements(cursor: CursorWrapper, source: str, target: str) -> list[str]:
    """The DDL that makes `target` a copy of `source`; run with `source` as the search_path, so
    the definitions PostgreSQL prints name the schema's own objects unqualified."""
    quote = connection.ops.quote_name
    row = _rows(
        cursor, "SELECT oid, quote_ident(nspname) FROM pg_namespace WHERE nspname = %s", [source]
    )
    if not row:
        raise TemplateUnavailable(f"no template schema {source!r}")
    oid, src = int(row[0][0]), row[0][1]
    unsupported = _unsupported(cursor, oid)
    if unsupported:
        raise TemplateUnavailable("the template holds " + ", ".join(unsupported))
    tgt = quote(target)
    statements = [f"CREATE SCHEMA {tgt}"]
    for (table,) in _rows(
        cursor,
        "SELECT quote_ident(relname) FROM pg_class WHERE relnamespace = %s AND relkind = 'r' "
        "ORDER BY oid",
        [oid],
    ):
        statements.append(
            f"CREATE TABLE {tgt}.{table} (LIKE {src}.{table} INCLUDING ALL EXCLUDING INDEXES)"
        )
    # Functions before the constraints and indexes, whose expressions may call them.
    for (definition,) in _rows(
        cursor,
        "SELECT pg_get_functiondef(oid) FROM pg_proc WHERE pronamespace = %s ORDER BY oid",
        [oid],
    ):
        statements.append(_retarget(definition, "FUNCTION", src, tgt))
    # Constraints with their names: keys and exclusions first, as foreign keys need them.
    for table, name, definition in _rows(
        cursor,
        "SELECT quote_ident(c.relname), quote_ident(co.conname), pg_get_constraintdef(co.oid) "
        "FROM pg_constraint co JOIN pg_class c ON c.oid = co.conrelid "
        "WHERE co.connamespace = %s AND co.contype IN ('p', 'u', 'x', 'f') "
        "ORDER BY co.contype = 'f', co.oid",
        [oid],
    ):
        statements.append(f"ALTER TABLE {tgt}.{table} ADD CONSTRAINT {name} {definition}")
    for (definition,) in _rows(
        cursor,
        "SELECT pg_get_indexdef(i.indexrelid) FROM pg_index i "
        "JOIN pg_class c ON c.oid = i.indexrelid WHERE c.relnamespace = %s "
        "AND NOT EXISTS (SELECT 1 FROM pg_constraint co WHERE co.conindid = i.indexrelid "
        "AND co.conrelid = i.indrelid AND co.contype IN ('p', 'u', 'x')) ORDER BY c.oid",
        [oid],
    ):
        statements.append(_retarget(definition, "ON", src, tgt))
    for (definition,) in _rows(
        cursor,
        "SELECT pg_get_triggerdef(t.oid) FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
        "WHERE c.relnamespace = %s AND NOT t.tgisinternal ORDER BY t.oid",
        [oid],
    ):
        statements.append(_retarget(definition, "ON", src, tgt))
    # Every identifier here is quoted (quote_name, or quote_ident in the catalog query).
    table = quote(_MIGRATIONS_TABLE)
    statements.append(
        f"INSERT INTO {tgt}.{table} OVERRIDING SYSTEM VALUE SELECT * FROM {src}.{table}"  # noqa: S608
    )
    for (sequence,) in _rows(cursor, "SELECT pg_get_serial_sequence(%s, 'id')", [f"{src}.{table}"]):
        if sequence:
            # The sequence's name without its schema: `src.` then the (quoted) relation name.
            name = sequence[len(src) + 1 :]
            statements.append(
                f"SELECT setval('{tgt}.{name}', last_value, is_called) FROM {sequence}"  # noqa: S608
            )
    return statements


def _on_citus(cursor: CursorWrapper) -> bool:
    """Whether the database has the Citus extension (schema-based sharding, docs/scaling.md)."""
    return bool(_rows(cursor, "SELECT 1 FROM pg_extension WHERE extname = %s", ["citus"]))


def schema_clone(*, target: str) -> None:
    """Create schema `target` as a copy of the template, in the caller's transaction.

    Raises TemplateUnavailable when there is no current template to clone (nothing is changed),
    and the database's error (e.g. `duplicate_schema`) when `target` cannot be created.
    """
    source = template_schema()
    if source is None:
        raise TemplateUnavailable("cloning is turned off (TENANT_BASE_SCHEMA is empty)")
    if connection.get_autocommit():
        raise RuntimeError("schema_clone runs inside the caller's transaction.")
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock_shared(%s)", [TEMPLATE_LOCK_ID])
        if not schema_exists(source) or missing_migrations([source])[source]:
            raise TemplateUnavailable(f"the template {source!r} is missing or behind the code")
        cursor.execute("SELECT current_setting('search_path')")
        search_path = cursor.fetchone()[0]
        # Quoted: the search_path is a list of identifiers, not a bare name.
        cursor.execute("SELECT set_config('search_path', quote_ident(%s), true)", [source])
        statements = _clone_statements(cursor, source, target)
        cursor.execute("SELECT set_config('search_path', quote_ident(%s), true)", [target])
        if _on_citus(cursor):
            # Citus forwards a trigger's or function's DDL to the worker as the query text it
            # arrived in, which must then hold one statement; and it refuses triggers on
            # distributed tables unless `citus.enable_unsafe_triggers` is on (this transaction).
            cursor.execute("SET LOCAL citus.enable_unsafe_triggers = on")
            for statement in statements:
                cursor.execute(statement)
        else:
            # One round trip for the whole DDL: no parameters, so no placeholder is interpreted.
            cursor.execute(";\n".join(statements))
        cursor.execute("SELECT set_config('search_path', %s, true)", [search_path])
