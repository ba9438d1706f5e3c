"""The schema stays ready for Citus schema-based sharding (docs/scaling.md).

A tenant schema becomes a distributed schema on one Citus node while the public schema stays on
the coordinator, so: no foreign key from a tenant table to a public one, 64-bit integer keys
(a 32-bit sequence runs out on a busy tenant and cannot be widened without a rewrite), and no
`CREATE TABLE … AS` in migrations (Citus does not propagate it into distributed schemas).
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Iterable

import pytest
from django.apps import apps
from django.conf import settings
from django.db import connection, models
from django.db.migrations.loader import MigrationLoader
from django.db.migrations.operations import RunSQL
from django.db.migrations.operations.base import Operation
from django_tenants.utils import schema_context

# The project's own apps: the tenant app and the shared apps it ships.
TENANT_LABELS = {label.rsplit(".", 1)[-1] for label in settings.TENANT_APPS}
PROJECT_LABELS = {"tenants", "webhooks", *TENANT_LABELS}
# 64-bit or not a counter: BigIntegerField is a key taken from elsewhere (a schema's oid).
ALLOWED_PRIMARY_KEYS = (
    models.BigAutoField, models.BigIntegerField, models.UUIDField, models.CharField
)

CREATE_TABLE_AS = re.compile(
    r"\bCREATE\s+(?:(?:GLOBAL|LOCAL)\s+)?(?:(?:TEMP|TEMPORARY|UNLOGGED)\s+)?TABLE\s+"
    r"(?:IF\s+NOT\s+EXISTS\s+)?[\w.\"]+\s*(?:\([^;]*?\)\s*)?(?:WITH\s*\([^;]*?\)\s*)?"
    r"(?:USING\s+\w+\s+)?(?:TABLESPACE\s+\w+\s+)?AS\b",
    re.IGNORECASE,
)


def project_models(labels: set[str]) -> list[type[models.Model]]:
    return [
        model for model in apps.get_models(include_auto_created=True)
        if model._meta.app_label in labels
    ]


def relations_leaving(labels: set[str]) -> list[str]:
    """Foreign keys, one-to-ones and many-to-manys from these apps' models to other apps."""
    found = []
    for model in project_models(labels):
        for field in model._meta.get_fields(include_hidden=True):
            if not (field.is_relation and field.concrete and field.related_model):
                continue
            target = field.related_model
            if isinstance(target, str) or target._meta.app_label in labels:
                continue
            found.append(f"{model._meta.label}.{field.name} -> {target._meta.label}")
        for m2m in model._meta.many_to_many:
            target = m2m.related_model
            if not isinstance(target, str) and target._meta.app_label not in labels:
                found.append(f"{model._meta.label}.{m2m.name} -> {target._meta.label}")
    return found


def sql_of(operations: Iterable[Operation]) -> list[str]:
    """Every SQL statement of RunSQL operations, nested ones included."""
    statements: list[str] = []
    for operation in operations:
        if isinstance(operation, RunSQL):
            for sql in (operation.sql, operation.reverse_sql):
                items = [sql] if isinstance(sql, str) else list(sql or [])
                for item in items:
                    if item is RunSQL.noop:
                        continue
                    statements.append(item if isinstance(item, str) else str(item[0]))
        nested = getattr(operation, "database_operations", None)
        if nested:
            statements.extend(sql_of(nested))
    return statements


def project_migrations() -> list[tuple[str, str, object]]:
    loader = MigrationLoader(None, ignore_no_migrations=True)
    return [
        (app, name, migration)
        for (app, name), migration in sorted(loader.disk_migrations.items())
        if app in PROJECT_LABELS
    ]


def test_no_relation_from_a_tenant_app_to_a_shared_app() -> None:
    assert {"billable"} == TENANT_LABELS
    # The check finds relations that leave a set of apps (webhook endpoints point at tenants).
    assert any("-> tenants.Tenant" in found for found in relations_leaving({"webhooks"}))

    leaving = relations_leaving(TENANT_LABELS)

    assert not leaving, f"tenant models must not reference shared models: {leaving}"


def test_integer_primary_keys_are_64_bit() -> None:
    checked = project_models(PROJECT_LABELS)
    assert len(checked) >= 20

    narrow = [
        f"{model._meta.label}.{model._meta.pk.name}: {type(model._meta.pk).__name__}"
        for model in checked
        if not isinstance(model._meta.pk, ALLOWED_PRIMARY_KEYS)
    ]

    assert not narrow, f"use BigAutoField (or a UUID) for these keys: {narrow}"
    assert settings.DEFAULT_AUTO_FIELD == "django.db.models.BigAutoField"


def test_integer_key_columns_are_bigint_in_the_database(acme: object, db: None) -> None:
    """What migrations really created, in the public schema and in a tenant schema."""
    narrow = []
    for model in project_models(PROJECT_LABELS):
        schema = "t_acme" if model._meta.app_label in TENANT_LABELS else "public"
        with schema_context(schema), connection.cursor() as cursor:
            for field in model._meta.concrete_fields:
                if not (field.primary_key or field.is_relation):
                    continue
                cursor.execute(
                    "SELECT data_type FROM information_schema.columns"
                    " WHERE table_schema = %s AND table_name = %s AND column_name = %s",
                    [schema, model._meta.db_table, field.column],
                )
                row = cursor.fetchone()
                assert row, (schema, model._meta.db_table, field.column)
                if row[0] in ("integer", "smallint"):
                    narrow.append(f"{schema}.{model._meta.db_table}.{field.column}: {row[0]}")

    assert not narrow, narrow


@pytest.mark.parametrize(
    "sql",
    [
        "CREATE TABLE copy AS SELECT * FROM billable_product",
        'create unlogged table if not exists "t"."copy" as table billable_product',
        "CREATE TEMP TABLE copy (id) WITH (fillfactor=70) AS VALUES (1)",
    ],
)
def test_create_table_as_is_recognised(sql: str) -> None:
    assert CREATE_TABLE_AS.search(sql)


def test_no_create_table_as_in_migrations() -> None:
    migrations = project_migrations()
    assert {app for app, _, _ in migrations} == PROJECT_LABELS
    statements = 0
    offending = []
    for app, name, migration in migrations:
        for sql in sql_of(migration.operations):  # type: ignore[attr-defined]
            statements += 1
            if CREATE_TABLE_AS.search(sql):
                offending.append(f"{app}.{name}: RunSQL")
        # Source text too: SQL run by RunPython or a schema editor call.
        if CREATE_TABLE_AS.search(inspect.getsource(inspect.getmodule(migration))):
            offending.append(f"{app}.{name}: source")
    # billable.0002 installs the ledger trigger with RunSQL, so the scan reads real SQL.
    assert statements >= 1

    assert not offending, offending


TRIGGER_DDL = re.compile(r"\b(CREATE|DROP)\s+TRIGGER\b", re.IGNORECASE)
DOLLAR_QUOTED = re.compile(r"\$(\w*)\$.*?\$\1\$", re.DOTALL)


def test_trigger_ddl_is_one_statement_per_item_after_citus_unsafe_triggers() -> None:
    """Citus refuses triggers on distributed tables unless `citus.enable_unsafe_triggers` is on,
    and forwards a trigger's DDL as the query text it came in, which must be one statement."""
    checked = 0
    offending = []
    for app, name, migration in project_migrations():
        for operation in migration.operations:  # type: ignore[attr-defined]
            if not isinstance(operation, RunSQL):
                continue
            for sql in (operation.sql, operation.reverse_sql):
                items = [sql] if isinstance(sql, str) else list(sql or [])
                texts = [item if isinstance(item, str) else str(item[0]) for item in items
                         if item is not RunSQL.noop]
                if not any(TRIGGER_DDL.search(text) for text in texts):
                    continue
                checked += 1
                if not re.fullmatch(
                    r"\s*SET\s+LOCAL\s+citus\.enable_unsafe_triggers\s*=\s*on\s*;?\s*",
                    texts[0], re.IGNORECASE,
                ):
                    offending.append(f"{app}.{name}: SET LOCAL citus.enable_unsafe_triggers first")
                for text in texts:
                    if ";" in DOLLAR_QUOTED.sub("", text).strip().rstrip(";"):
                        offending.append(f"{app}.{name}: several statements in one item")
    assert checked >= 2  # billable.0002 forward and backward
    assert not offending, offending


@pytest.mark.parametrize(
    ("table", "column"),
    [
        ("billable_order", "period_number"),
        ("t" * 60, "amount"),
        ("billable_subscription_with_a_rather_long_name", "renewal_notified_period_number"),
    ],
)
def test_an_added_column_check_is_named_as_postgresql_would(
    table: str, column: str, db: None
) -> None:
    """Citus refuses `ADD COLUMN … CHECK (…)` without a constraint name; the schema editor names
    it as PostgreSQL would, so plain PostgreSQL and Citus get the same schema."""
    from billing_platform.core.postgresql.base import _postgres_default_name

    quote = connection.ops.quote_name
    with connection.cursor() as cursor:
        cursor.execute(f"CREATE TEMPORARY TABLE {quote(table)} (id integer)")
        try:
            cursor.execute(
                f"ALTER TABLE {quote(table)} ADD COLUMN {quote(column)} integer "
                f"CHECK ({quote(column)} >= 0)"
            )
            cursor.execute(
                "SELECT conname FROM pg_constraint WHERE conrelid = %s::regclass AND contype = 'c'",
                [quote(table)],
            )
            assert cursor.fetchone()[0] == _postgres_default_name(table, column, "check")
        finally:
            cursor.execute(f"DROP TABLE {quote(table)}")


def test_the_schema_editor_names_an_added_columns_check(db: None) -> None:
    model = apps.get_model("billable", "Order")
    field = model._meta.get_field("period_number")
    with connection.schema_editor(collect_sql=True, atomic=False) as editor:
        editor.add_field(model, field)
    assert any(
        'CONSTRAINT "billable_order_period_number_check" CHECK' in sql
        for sql in editor.collected_sql
    ), editor.collected_sql
