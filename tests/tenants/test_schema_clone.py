"""Tenant schemas cloned from the template: the same as migrated ones, and working.

These commit (schemas are created for real), so each test removes what it made.
"""

from __future__ import annotations

import io
import secrets
from collections.abc import Iterator

import pytest
from django.core.management import call_command
from django.db import DEFAULT_DB_ALIAS, DatabaseError, connection, connections, transaction
from django.test import override_settings
from django_tenants.utils import schema_context, schema_exists

from billable.models import Customer, LedgerEntry
from billable.selectors import CustomerRef
from billable.services.customers import customer_ensure
from billable.services.quota import quota_consume
from billing_platform.core.listen import Listener
from tenants import schema_clone as schema_clone_module
from tenants.checks import template_schema_check
from tenants.models import Tenant, TenantStatus
from tenants.schema_clone import TemplateUnavailable, schema_clone, template_migrate
from tenants.schema_migrations import forget_recorded, missing_migrations, tenant_schemas
from tenants.services import SPARE_CLAIMED_CHANNEL, spare_pool_refill, tenant_onboard
from tests.support.billing import assert_ledger_invariant, credit, reports_catalog
from tests.support.schema_shape import schema_shape
from tests.support.tenants import drop_tenants


def test_the_module_runs_on_the_test_database(db: None) -> None:
    assert str(connection.settings_dict["NAME"]).startswith("test_")


def _drop_schema(name: str) -> None:
    connection.set_schema_to_public()
    with connection.cursor() as cursor:
        cursor.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


def _drop_pool() -> None:
    drop_tenants(Tenant.objects.filter(status__in=[TenantStatus.SPARE, TenantStatus.BUILDING]))


def _migrate_template(name: str | None = None) -> None:
    holder = connections.create_connection(DEFAULT_DB_ALIAS)
    try:
        if name is None:
            template_migrate(holder)
        else:
            with override_settings(TENANT_BASE_SCHEMA=name):
                template_migrate(holder)
    finally:
        holder.close()


@pytest.fixture
def template(committed: None) -> str:
    """The configured template, current (the test database's `migrate_schemas` built it)."""
    _migrate_template()
    return "tenant_template"


@pytest.fixture
def schemas(committed: None) -> Iterator[list[str]]:
    """Schema names appended here are dropped after the test."""
    names: list[str] = []
    yield names
    for name in names:
        _drop_schema(name)


def test_a_cloned_schema_is_the_same_as_a_migrated_one(template: str, schemas: list[str]) -> None:
    # given: a schema built by every migration, and one cloned from the template
    migrated, cloned = f"mig_{secrets.token_hex(3)}", f"cln_{secrets.token_hex(3)}"
    schemas.extend([migrated, cloned])
    with connection.cursor() as cursor:
        cursor.execute(f'CREATE SCHEMA "{migrated}"')
    call_command(
        "migrate_schemas", "--tenant", "-s", migrated, "--noinput", "-v", "0", stdout=io.StringIO()
    )
    connection.set_schema_to_public()

    # when
    with transaction.atomic():
        schema_clone(target=cloned)

    # then: tables, columns, constraints (named, deferrable), indexes, triggers, functions,
    # sequences (at the same positions) and recorded migrations are the same
    expected, actual = schema_shape(migrated), schema_shape(cloned)
    for shape in (expected, actual):
        # The migrations' sequence position depends on the schema's history (a migration rolled
        # back leaves it ahead); the next test checks the clone takes the template's.
        shape["sequences"] = [
            (*row[:7], None, *row[8:]) if row[0].startswith("django_migrations") else row
            for row in shape["sequences"]
        ]
    assert expected["triggers"] and expected["functions"] and expected["sequences"]
    assert any(row[3] for row in expected["constraints"])  # a deferrable foreign key
    for part in expected:
        assert actual[part] == expected[part], part
    assert missing_migrations([cloned]) == {cloned: 0}
    assert cloned not in tenant_schemas()


def _sequences(schema: str) -> dict[str, int | None]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT sequencename, last_value FROM pg_sequences WHERE schemaname = %s", [schema]
        )
        return dict(cursor.fetchall())


def test_a_clone_takes_no_sequence_position_but_that_of_its_migrations(
    template: str, schemas: list[str]
) -> None:
    # given: a template whose sequences have moved (they never should: it is no tenant)
    moved = [name for name in _sequences(template) if not name.startswith("django_migrations")]
    assert moved
    with connection.cursor() as cursor:
        for name in moved:
            cursor.execute("SELECT nextval(%s)", [f'"{template}"."{name}"'])
    cloned = f"cln_{secrets.token_hex(3)}"
    schemas.append(cloned)

    # when
    with transaction.atomic():
        schema_clone(target=cloned)

    # then: every sequence of the clone is unused, as in a migrated schema, but the migrations'
    positions = _sequences(cloned)
    assert {name: positions[name] for name in moved} == dict.fromkeys(moved)
    migrations = next(name for name in positions if name.startswith("django_migrations"))
    assert positions[migrations] == _sequences(template)[migrations]
    with schema_context(cloned):
        assert not Customer.objects.exists()


def test_a_tenant_onboarded_by_clone_consumes_and_keeps_its_ledger_append_only(
    template: str, cleanup_tenants: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # given: no spare left and no way to build by migrations: the onboarding must clone
    _drop_pool()

    def no_migrations(*args: object, **kwargs: object) -> None:
        raise AssertionError("built by migrations")

    monkeypatch.setattr(Tenant, "create_schema", no_migrations)
    slug = f"cl-{secrets.token_hex(3)}"
    cleanup_tenants.append(slug)

    # when
    tenant, _, raw = tenant_onboard(name="Cloned", slug=slug)

    # then: it works like any tenant
    assert raw and tenant.status == TenantStatus.ACTIVE
    reports_catalog(tenant, units=10)
    with schema_context(tenant.schema_name):
        customer = customer_ensure(CustomerRef(external_id="alice"))
        credit(customer, 5, None)
        quota_consume(customer=customer, feature="report_generation", amount=3)
        assert_ledger_invariant(customer)
        with pytest.raises(DatabaseError), transaction.atomic():
            LedgerEntry.objects.update(amount=0)  # the append-only trigger came along
    _drop_pool()


def test_a_template_behind_the_code_is_not_cloned(committed: None, schemas: list[str]) -> None:
    # given: a template lacking its last migration
    stale = f"tmpl_{secrets.token_hex(3)}"
    schemas.append(stale)
    _migrate_template(stale)
    with connection.cursor() as cursor:
        cursor.execute(
            f'DELETE FROM "{stale}".django_migrations WHERE id = '
            f'(SELECT max(id) FROM "{stale}".django_migrations)'
        )
    forget_recorded([stale])  # changed by hand: its record no longer holds

    # when / then: refused, nothing made
    target = f"cln_{secrets.token_hex(3)}"
    with (
        override_settings(TENANT_BASE_SCHEMA=stale),
        pytest.raises(TemplateUnavailable),
        transaction.atomic(),
    ):
        schema_clone(target=target)
    assert not schema_exists(target)

    # and the next refill brings the template current again
    with override_settings(TENANT_BASE_SCHEMA=stale):
        spare_pool_refill(target=0)
    assert missing_migrations([stale]) == {stale: 0}


def test_migrate_schemas_builds_a_missing_template(committed: None, schemas: list[str]) -> None:
    name = f"tmpl_{secrets.token_hex(3)}"
    schemas.append(name)
    with override_settings(TENANT_BASE_SCHEMA=name):
        call_command("migrate_schemas", "--tenant", "--noinput", "-v", "0", stdout=io.StringIO())
    connection.set_schema_to_public()
    assert missing_migrations([name]) == {name: 0}
    assert not Tenant.objects.filter(schema_name=name).exists()


def test_claiming_a_spare_wakes_the_worker(template: str, cleanup_tenants: list[str]) -> None:
    # given: a spare, and a worker listening
    _drop_pool()
    spare_pool_refill(target=1)
    listener = Listener(SPARE_CLAIMED_CHANNEL)
    listener.wait(0)
    try:
        assert not listener.wait(0.2)
        slug = f"cl-{secrets.token_hex(3)}"
        cleanup_tenants.append(slug)

        # when
        tenant_onboard(name="Claimed", slug=slug)

        # then: notified on commit
        assert listener.wait(10)
    finally:
        listener.close()
        _drop_pool()


def test_a_failed_clone_falls_back_to_the_migrations(
    template: str, cleanup_tenants: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # given: no spare left, and a clone that fails in the database (not TemplateUnavailable)
    _drop_pool()
    real = schema_clone_module._clone_statements

    def failing(*args: object) -> list[str]:
        return [*real(*args), "SELECT 1 / 0"]  # type: ignore[arg-type]

    monkeypatch.setattr(schema_clone_module, "_clone_statements", failing)
    slug = f"cl-{secrets.token_hex(3)}"
    cleanup_tenants.append(slug)

    # when
    tenant, _, raw = tenant_onboard(name="Fallback", slug=slug)

    # then: built by migrations, complete
    assert raw and tenant.status == TenantStatus.ACTIVE
    assert missing_migrations([tenant.schema_name]) == {tenant.schema_name: 0}
    with schema_context(tenant.schema_name):
        assert not Customer.objects.exists()
    _drop_pool()


@pytest.mark.parametrize(
    "function",
    [
        "CREATE FUNCTION {s}.f() RETURNS bigint LANGUAGE sql "
        "AS 'SELECT count(*) FROM {s}.billable_product'",
        "CREATE FUNCTION {s}.f() RETURNS int LANGUAGE sql SET search_path = {s} AS 'SELECT 1'",
    ],
    ids=["body", "search_path"],
)
def test_a_template_function_naming_the_template_is_not_cloned(
    committed: None, schemas: list[str], function: str
) -> None:
    # given: a template with a function that reaches into the template itself
    stale = f"tmpl_{secrets.token_hex(3)}"
    schemas.append(stale)
    _migrate_template(stale)
    with connection.cursor() as cursor:
        cursor.execute(function.format(s=stale))

    # when / then: refused (the build then runs the migrations), nothing made
    target = f"cln_{secrets.token_hex(3)}"
    with (
        override_settings(TENANT_BASE_SCHEMA=stale),
        pytest.raises(TemplateUnavailable, match="function naming the template"),
        transaction.atomic(),
    ):
        schema_clone(target=target)
    assert not schema_exists(target)


def test_an_extension_member_in_the_template_is_not_cloned(
    committed: None, schemas: list[str]
) -> None:
    # given: a template holding an extension's objects
    stale = f"tmpl_{secrets.token_hex(3)}"
    schemas.append(stale)
    _migrate_template(stale)
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(f'CREATE EXTENSION IF NOT EXISTS citext SCHEMA "{stale}"')
    except DatabaseError as exc:
        pytest.skip(f"no extension can be created here: {exc}")
    try:
        # when / then
        target = f"cln_{secrets.token_hex(3)}"
        with (
            override_settings(TENANT_BASE_SCHEMA=stale),
            pytest.raises(TemplateUnavailable, match="extension member"),
            transaction.atomic(),
        ):
            schema_clone(target=target)
        assert not schema_exists(target)
    finally:
        with connection.cursor() as cursor:
            cursor.execute("DROP EXTENSION IF EXISTS citext")


def test_an_index_on_a_template_function_is_cloned(committed: None, schemas: list[str]) -> None:
    # given: a template with an index whose expression calls one of its functions
    source = f"tmpl_{secrets.token_hex(3)}"
    schemas.append(source)
    _migrate_template(source)
    with connection.cursor() as cursor:
        cursor.execute(
            f'CREATE FUNCTION "{source}".twice(x bigint) RETURNS bigint '
            "LANGUAGE sql IMMUTABLE AS 'SELECT x * 2'"
        )
        cursor.execute(
            f'CREATE INDEX product_twice ON "{source}".billable_product ("{source}".twice(id))'
        )
    target = f"cln_{secrets.token_hex(3)}"
    schemas.append(target)

    # when
    with override_settings(TENANT_BASE_SCHEMA=source), transaction.atomic():
        schema_clone(target=target)

    # then: the clone's index calls the clone's function
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT indexdef FROM pg_indexes WHERE schemaname = %s AND indexname = %s",
            [target, "product_twice"],
        )
        (definition,) = cursor.fetchone()
    assert f"{target}.twice" in definition or "twice(id)" in definition
    assert source not in definition


@pytest.mark.parametrize(
    ("name", "valid"),
    [
        ("tenant_template", True),
        ("", True),  # cloning turned off
        ("public", False),
        ("t_template", False),
        ("spare_template", False),
        ("Tenant_Template", False),
        ('tmpl"x', False),
        ("pg_template", False),
        ("a" * 64, False),
    ],
)
def test_the_template_schema_name_is_checked(name: str, valid: bool) -> None:
    with override_settings(TENANT_BASE_SCHEMA=name):
        errors = template_schema_check()
    assert (errors == []) is valid, errors
    assert all(error.id == "billable.E002" for error in errors)
