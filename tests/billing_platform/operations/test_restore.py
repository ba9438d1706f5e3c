"""Restoring one tenant's schema from a copy (`manage.py restore_tenant`), on committed schemas.

The copy is another schema of the test database, reached through its own connection URL as a
scratch database would be: first the tenant's own schema (a restore that changes nothing), then
the schema it replaced, taken back after later changes (a restore to an earlier state).
"""

from __future__ import annotations

import io
import secrets
from collections.abc import Iterator
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django_tenants.utils import schema_context
from psycopg.conninfo import make_conninfo

from billable.models import LedgerEntry, Usage
from tenants import resolution
from tenants.models import Tenant, TenantStatus
from tenants.services import tenant_onboard
from tests.support.api import Api
from tests.support.billing import reports_catalog


def test_the_module_runs_on_the_test_database(db: None) -> None:
    assert str(connection.settings_dict["NAME"]).startswith("test_")


def _database_url() -> str:
    params = connection.settings_dict
    return make_conninfo(
        dbname=params["NAME"], host=params["HOST"] or "", port=str(params["PORT"] or ""),
        user=params["USER"] or "", password=params["PASSWORD"] or "",
    )


def _schemas(prefix: str) -> set[str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT nspname FROM pg_namespace WHERE nspname LIKE %s",
                       [prefix.replace("_", r"\_") + "%"])
        return {row[0] for row in cursor.fetchall()}


def _set_status(tenant: Tenant, status: str) -> None:
    Tenant.objects.filter(pk=tenant.pk).update(status=status)
    resolution.invalidate_tenant(tenant)


def _remaining(api: Api, key: str) -> Any:
    response = api.get("billing/balance", key=key,
                       query={"external_id": "ann", "feature": "reports"})
    assert response.status == 200, response.body
    return response.json["remaining"]


@pytest.fixture
def tenant(committed: None, api: Api) -> Iterator[tuple[Tenant, str]]:
    tenant, _key_row, raw = tenant_onboard(name="Restored", slug=f"rst-{secrets.token_hex(4)}",
                                           rate_limit="0")
    try:
        reports_catalog(tenant, units=10)
        grant = api.post("billing/grants", key=raw,
                         json={"external_id": "ann", "sku": "reports_10", "kind": "manual"})
        assert grant.status == 201, grant.body
        consume = api.post("billing/quota/consume", key=raw, headers={"Idempotency-Key": "c-1"},
                           json={"external_id": "ann", "feature": "reports", "amount": 3})
        assert consume.status == 200, consume.body
        yield tenant, raw
    finally:
        connection.set_schema_to_public()
        with connection.cursor() as cursor:
            for name in _schemas(tenant.schema_name + "_"):
                cursor.execute(f'DROP SCHEMA "{name}" CASCADE')
        if Tenant.objects.filter(pk=tenant.pk).exists():
            call_command("delete_tenant", tenant.slug, "--confirm", tenant.slug,
                         stdout=io.StringIO())


def test_an_active_tenant_is_not_restored(tenant: tuple[Tenant, str]) -> None:
    row, _key = tenant
    with pytest.raises(CommandError, match=r"restore_refused: .*suspend it first"):
        call_command("restore_tenant", row.slug, "--from", _database_url(), stdout=io.StringIO())
    assert _schemas(row.schema_name + "_") == set()


def test_a_copy_behind_the_code_is_refused(tenant: tuple[Tenant, str]) -> None:
    row, _key = tenant
    _set_status(row, TenantStatus.SUSPENDED)
    with connection.cursor() as cursor:
        table = f'"{row.schema_name}".django_migrations'
        cursor.execute(f"DELETE FROM {table} WHERE app = 'billable' AND name = "
                       f"(SELECT max(name) FROM {table} WHERE app = 'billable')")
    with pytest.raises(CommandError, match=r"restore_refused: .*1 missing"):
        call_command("restore_tenant", row.slug, "--from", _database_url(), stdout=io.StringIO())
    assert _schemas(row.schema_name + "_") == set()


def test_restore_copies_every_row_and_brings_back_an_earlier_state(
    tenant: tuple[Tenant, str], api: Api
) -> None:
    row, key = tenant
    schema = row.schema_name
    with schema_context(schema):
        ledger_before = list(LedgerEntry.objects.order_by("id").values_list("id", "amount"))
    _set_status(row, TenantStatus.SUSPENDED)

    # when: restored from its own schema (same rows)
    out = io.StringIO()
    call_command("restore_tenant", row.slug, "--from", _database_url(), stdout=out)

    # then: a new schema holds the same rows; the old one is kept aside
    assert f"the schema it replaced is {schema}_before_restore" in out.getvalue()
    assert _schemas(schema + "_") == {f"{schema}_before_restore"}
    with schema_context(schema):
        assert list(LedgerEntry.objects.order_by("id").values_list("id", "amount")) == ledger_before
    _set_status(row, TenantStatus.ACTIVE)
    assert _remaining(api, key) == 7
    # the sequences go on after the copied keys: new ledger entries insert
    consume = api.post("billing/quota/consume", key=key,
                       json={"external_id": "ann", "feature": "reports", "amount": 2})
    assert consume.status == 200 and consume.json["remaining"] == 5, consume.body
    replay = api.post("billing/quota/consume", key=key, headers={"Idempotency-Key": "c-1"},
                      json={"external_id": "ann", "feature": "reports", "amount": 3})
    assert replay.headers.get("Idempotent-Replayed") == "true"  # the records came along
    with schema_context(schema):
        assert LedgerEntry.objects.count() == len(ledger_before) + 1
        assert LedgerEntry.objects.order_by("-id").first().id > ledger_before[-1][0]

    # when: a second restore while the first one's old schema is still there
    _set_status(row, TenantStatus.SUSPENDED)
    with pytest.raises(CommandError, match=r"restore_refused: .*_before_restore' exists"):
        call_command("restore_tenant", row.slug, "--from", _database_url(),
                     stdout=io.StringIO())

    # when: the state before the last consume is restored from the kept schema
    with connection.cursor() as cursor:
        cursor.execute(f'ALTER SCHEMA "{schema}_before_restore" RENAME TO "{schema}_copy"')
    call_command("restore_tenant", row.slug, "--from", _database_url(),
                 "--schema", f"{schema}_copy", stdout=io.StringIO())

    # then: the consume made after the copy is gone
    _set_status(row, TenantStatus.ACTIVE)
    assert _remaining(api, key) == 7
    with schema_context(schema):
        assert Usage.objects.count() == 1
        assert list(LedgerEntry.objects.order_by("id").values_list("id", "amount")) == ledger_before
