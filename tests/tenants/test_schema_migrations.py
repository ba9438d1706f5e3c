"""Which schemas are behind the code: only a missing schema or table counts as behind."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from django.db import OperationalError, connection
from django.db.migrations.loader import MigrationLoader
from psycopg.conninfo import make_conninfo

from tenants.schema_migrations import missing_migrations
from tests.support.tenants import TenantFixture


def test_the_module_runs_on_the_test_database(db: None) -> None:
    assert str(connection.settings_dict["NAME"]).startswith("test_")


def _other_connection() -> psycopg.Connection[Any]:
    params = connection.settings_dict
    return psycopg.connect(make_conninfo(
        dbname=params["NAME"], host=params["HOST"] or "", port=str(params["PORT"] or ""),
        user=params["USER"] or "", password=params["PASSWORD"] or "",
    ))


def test_a_current_schema_and_a_missing_one(
    committed: None, committed_tenants: dict[str, TenantFixture]
) -> None:
    schema = committed_tenants["acme"].tenant.schema_name
    result = missing_migrations([schema, "t_no_such_schema"])
    assert result[schema] == 0
    assert result["t_no_such_schema"] > 0


def test_an_error_that_is_not_a_missing_schema_is_not_counted_as_behind(
    committed: None, committed_tenants: dict[str, TenantFixture]
) -> None:
    # given: another session holds the tenant's django_migrations locked (as a Citus worker that
    # does not answer, or a lost connection, the check cannot read it)
    schema = committed_tenants["acme"].tenant.schema_name
    with _other_connection() as holder:
        holder.execute(f'LOCK TABLE "{schema}".django_migrations IN ACCESS EXCLUSIVE MODE')
        with connection.cursor() as cursor:
            cursor.execute("SET lock_timeout = '200ms'")
        try:
            # then: the error propagates; the schema is not reported behind the code
            with pytest.raises(OperationalError, match="lock timeout"):
                missing_migrations([schema], recheck=True)
        finally:
            with connection.cursor() as cursor:
                cursor.execute("RESET lock_timeout")
        holder.rollback()
    assert missing_migrations([schema], recheck=True) == {schema: 0}


# --- The record of schemas found current.


def _schema_with_every_migration(name: str) -> None:
    """A bare schema whose django_migrations holds every migration of the code (committed)."""
    from tenants.schema_migrations import required_migrations

    required = required_migrations()
    with connection.cursor() as cursor:
        cursor.execute(f'CREATE SCHEMA "{name}"')
        cursor.execute(
            f'CREATE TABLE "{name}".django_migrations (id serial PRIMARY KEY, app text, '
            "name text, applied timestamptz DEFAULT now())"
        )
        cursor.execute(
            f'INSERT INTO "{name}".django_migrations (app, name) '
            "SELECT * FROM unnest(%s::text[], %s::text[])",
            [[app for app, _ in required], [m for _, m in required]],
        )


@pytest.fixture
def bare_schemas(committed: None) -> Any:
    names: list[str] = []
    yield names
    with connection.cursor() as cursor:
        for name in names:
            cursor.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


def _unreadable(name: str) -> Any:
    """Another session holding the schema's django_migrations: reading it times out."""
    holder = _other_connection()
    holder.execute(f'LOCK TABLE "{name}".django_migrations IN ACCESS EXCLUSIVE MODE')
    with connection.cursor() as cursor:
        cursor.execute("SET lock_timeout = '200ms'")
    return holder


def _release(holder: psycopg.Connection[Any]) -> None:
    holder.rollback()
    holder.close()
    with connection.cursor() as cursor:
        cursor.execute("RESET lock_timeout")


def test_a_schema_found_current_is_then_answered_from_its_record(bare_schemas: list[str]) -> None:
    # given: a schema found current once
    bare_schemas.append("rec_current")
    _schema_with_every_migration("rec_current")
    assert missing_migrations(["rec_current"]) == {"rec_current": 0}

    # when: its django_migrations cannot be read
    holder = _unreadable("rec_current")
    try:
        # then: the check answers from the record; a recheck reads the schema (and waits)
        assert missing_migrations(["rec_current"]) == {"rec_current": 0}
        with pytest.raises(OperationalError, match="lock timeout"):
            missing_migrations(["rec_current"], recheck=True)
    finally:
        _release(holder)


def test_a_record_made_by_other_code_is_not_trusted(bare_schemas: list[str]) -> None:
    from tenants.models import SchemaMigrationRecord

    # given: the schema's record was written by another version of the code
    bare_schemas.append("rec_other_code")
    _schema_with_every_migration("rec_other_code")
    missing_migrations(["rec_other_code"])
    assert SchemaMigrationRecord.objects.update(graph_digest="0" * 16) >= 1

    # then: the schema itself is read
    holder = _unreadable("rec_other_code")
    try:
        with pytest.raises(OperationalError, match="lock timeout"):
            missing_migrations(["rec_other_code"])
    finally:
        _release(holder)
    # and found current again, it is recorded for this code
    assert missing_migrations(["rec_other_code"]) == {"rec_other_code": 0}
    holder = _unreadable("rec_other_code")
    try:
        assert missing_migrations(["rec_other_code"]) == {"rec_other_code": 0}
    finally:
        _release(holder)


def test_a_schema_made_again_under_the_same_name_does_not_inherit_the_record(
    bare_schemas: list[str],
) -> None:
    # given: a schema found current, dropped, and made again empty under its name
    bare_schemas.append("rec_again")
    _schema_with_every_migration("rec_again")
    assert missing_migrations(["rec_again"]) == {"rec_again": 0}
    with connection.cursor() as cursor:
        cursor.execute('DROP SCHEMA "rec_again" CASCADE')
        cursor.execute('CREATE SCHEMA "rec_again"')

    # then: it lacks every migration
    assert missing_migrations(["rec_again"])["rec_again"] > 0


def test_a_renamed_schema_keeps_its_record(bare_schemas: list[str]) -> None:
    # given: a schema found current, then renamed (as onboarding renames a spare)
    bare_schemas.extend(["rec_spare", "rec_claimed"])
    _schema_with_every_migration("rec_spare")
    missing_migrations(["rec_spare"])
    with connection.cursor() as cursor:
        cursor.execute('ALTER SCHEMA "rec_spare" RENAME TO "rec_claimed"')

    # then: answered from the record under its new name
    holder = _unreadable("rec_claimed")
    try:
        assert missing_migrations(["rec_claimed"]) == {"rec_claimed": 0}
    finally:
        _release(holder)


def test_a_migrate_run_with_a_target_forgets_the_record(
    committed: None, committed_tenants: dict[str, TenantFixture]
) -> None:
    from django.core.management import call_command

    # given: a tenant's schema recorded as current
    schema = committed_tenants["acme"].tenant.schema_name
    assert missing_migrations([schema]) == {schema: 0}

    # when: a run takes its last billable migration away (faked: the tables stay)
    names = sorted(name for app, name in MigrationLoader(None).disk_migrations if app == "billable")
    call_command("migrate_schemas", "--schema", schema, "billable", names[-2], "--fake", "-v", "0")
    try:
        # then: the next check reads the schema and finds it behind
        assert missing_migrations([schema]) == {schema: 1}
    finally:
        call_command("migrate_schemas", "--schema", schema, "billable", "--fake", "-v", "0")
    assert missing_migrations([schema]) == {schema: 0}
