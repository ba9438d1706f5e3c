"""Which schemas are behind the code: only a missing schema or table counts as behind."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from django.db import OperationalError, connection
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
                missing_migrations([schema])
        finally:
            with connection.cursor() as cursor:
                cursor.execute("RESET lock_timeout")
        holder.rollback()
    assert missing_migrations([schema]) == {schema: 0}
