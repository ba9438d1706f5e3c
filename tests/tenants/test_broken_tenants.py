"""One broken tenant does not stop the platform: the sweep, `billing_verify`, `export_tenant`,
`migrate_schemas` and `/readyz` go on with the others and name it, and its keys get a 503.

Two committed tenants are broken the ways a tenant row can disagree with its schema: `gone`'s
schema was dropped, and `bent`'s was made by a slug once accepted with a trailing newline (slug
`bent-…\\n`, schema `t_bent_…\\n`, a name django-tenants refuses to select). The module removes
them afterwards.
"""

from __future__ import annotations

import io
import logging
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.utils import timezone

from billable.services.sweep import due_tenants_sweep
from billing_platform.operations.lifecycle import tenant_purge
from billing_platform.operations.services import platform_sweep
from tenants.models import Tenant
from tenants.schema_migrations import (
    missing_migrations,
    tenant_schemas_behind,
    unusable_schemas,
)
from tenants.services import tenant_onboard
from tests.support.api import Api, assert_problem
from tests.support.tenants import TenantFixture, require_test_database


@dataclass
class Broken:
    tenant: Tenant
    key: str
    why: str


def test_the_module_runs_on_the_test_database(db: None) -> None:
    assert str(connection.settings_dict["NAME"]).startswith("test_")


def _quoted(name: str) -> str:
    return connection.ops.quote_name(name)


@pytest.fixture(scope="module")
def broken(django_db_setup: None, django_db_blocker: Any) -> Iterator[dict[str, Broken]]:
    require_test_database()
    token = secrets.token_hex(3)
    made: list[Tenant] = []
    with django_db_blocker.unblock():
        try:
            gone, _row, gone_key = tenant_onboard(name="Gone", slug=f"gone-{token}")
            made.append(gone)
            bent, _row, bent_key = tenant_onboard(name="Bent", slug=f"bent-{token}")
            made.append(bent)
            with connection.cursor() as cursor:
                cursor.execute(f"DROP SCHEMA {_quoted(gone.schema_name)} CASCADE")
                cursor.execute(f"ALTER SCHEMA {_quoted(bent.schema_name)} "
                               f"RENAME TO {_quoted(bent.schema_name + chr(10))}")
            # Old enough for /readyz to count them, as real tenants would be.
            Tenant.objects.filter(pk=bent.pk).update(
                slug=bent.slug + "\n", schema_name=bent.schema_name + "\n")
            Tenant.objects.filter(pk__in=[gone.pk, bent.pk]).update(
                created_at=timezone.now() - timedelta(days=1))
            yield {
                "gone": Broken(Tenant.objects.get(pk=gone.pk), gone_key, "no such schema"),
                "bent": Broken(Tenant.objects.get(pk=bent.pk), bent_key, "invalid schema name"),
            }
        finally:
            connection.set_schema_to_public()
            for tenant in Tenant.objects.filter(pk__in=[t.pk for t in made]):
                tenant_purge(tenant=tenant)


@pytest.fixture
def broken_committed(broken: dict[str, Broken], committed: None) -> dict[str, Broken]:
    return broken


def _healthy() -> list[Tenant]:
    return [t for t in Tenant.objects.filter(status__in=["active", "suspended"])
            if not t.slug.startswith(("gone-", "bent-"))]


def test_the_schema_check_names_both(broken: dict[str, Broken], acme: TenantFixture) -> None:
    names = [b.tenant.schema_name for b in broken.values()] + ["t_acme"]
    assert unusable_schemas(names) == {b.tenant.schema_name: b.why for b in broken.values()}


def test_the_sweep_sweeps_the_others_and_reports_them(
    broken_committed: dict[str, Broken], caplog: pytest.LogCaptureFixture
) -> None:
    # when
    with caplog.at_level(logging.ERROR, logger="billable.sweep"):
        totals = due_tenants_sweep(everything=True)
        platform = platform_sweep(everything=True)

    # then: every healthy tenant swept, both broken ones counted and named, without a traceback
    assert totals["tenants"] == len(_healthy()) == platform["tenants"]
    assert totals["tenants_failed"] == 2 == platform["tenants_failed"]
    for item in broken_committed.values():
        assert any(repr(item.tenant.slug) in r.getMessage() and item.why in r.getMessage()
                   for r in caplog.records), caplog.text
    assert not any(r.exc_info for r in caplog.records)
    out = io.StringIO()
    call_command("billing_sweep", "--all", stdout=out)
    assert "tenants_failed=2" in out.getvalue()


def test_billing_verify_checks_the_others_and_fails_naming_them(
    broken_committed: dict[str, Broken],
) -> None:
    # when
    out = io.StringIO()
    with pytest.raises(CommandError) as raised:
        call_command("billing_verify", stdout=out)

    # then
    text = out.getvalue()
    assert "acme (t_acme): " in text and "globex (t_globex): " in text
    for item in broken_committed.values():
        line = f"{item.tenant.slug!r} ({item.tenant.schema_name!r}): NOT CHECKED, {item.why}"
        assert line in text, text
        assert repr(item.tenant.slug) in str(raised.value)
    assert f"{len(_healthy())} tenants checked, 0 drifting batches." in text
    assert "2 tenants not checked." in text


def test_export_of_a_broken_tenant_fails_clearly_and_writes_nothing(
    broken_committed: dict[str, Broken], tmp_path: Path
) -> None:
    gone = broken_committed["gone"].tenant
    target = tmp_path / "gone.jsonl"
    with pytest.raises(CommandError, match=r"tenant_unavailable: .*no such schema"):
        call_command("export_tenant", gone.slug, "-o", str(target))
    assert not target.exists()
    assert not (tmp_path / "gone.jsonl.partial").exists()
    bent = broken_committed["bent"].tenant
    with pytest.raises(CommandError, match=r"tenant_unavailable: .*invalid schema name"):
        call_command("export_tenant", bent.slug, "-o", str(target))


def test_its_keys_are_answered_503_not_500(
    broken_committed: dict[str, Broken], api: Api
) -> None:
    bent, gone = broken_committed["bent"], broken_committed["gone"]
    for path in ("keys", "billing/customers"):
        assert_problem(api.get(path, key=bent.key), 503, "tenant_unavailable")
    assert_problem(api.get("billing/customers", key=gone.key), 503, "tenant_unavailable")
    for item in (bent, gone):
        response = api.post("billing/identify", json={"external_id": "x"}, key=item.key,
                            headers={"Idempotency-Key": "broken-1"})
        assert_problem(response, 503, "tenant_unavailable")
        response = api.post("billing/identify", json={"external_id": "x"}, key=item.key)
        assert_problem(response, 503, "tenant_unavailable")


def test_readyz_is_not_held_down_by_them(broken_committed: dict[str, Broken], api: Api) -> None:
    assert tenant_schemas_behind(use_cache=False) == 0
    assert api.get("/readyz").status == 200


@pytest.fixture
def more_schemas(broken_committed: dict[str, Broken]) -> Iterator[tuple[Tenant, Tenant]]:
    """Two tenants after the broken ones, behind the code: one whose migration fails (a table
    that is in the way), one that only needs migrating."""
    token = secrets.token_hex(3)
    clash = Tenant.objects.create(slug=f"clash-{token}", name="Clash",
                                  schema_name=f"t_clash_{token}")
    late = Tenant.objects.create(slug=f"late-{token}", name="Late", schema_name=f"t_late_{token}")
    with connection.cursor() as cursor:
        cursor.execute(f"CREATE SCHEMA {clash.schema_name}")
        cursor.execute(f"CREATE TABLE {clash.schema_name}.billable_product (id integer)")
        cursor.execute(f"CREATE SCHEMA {late.schema_name}")
    try:
        yield clash, late
    finally:
        connection.set_schema_to_public()
        for tenant in (clash, late):
            tenant_purge(tenant=tenant)


def test_migrate_schemas_migrates_the_others_and_reports_them(
    broken_committed: dict[str, Broken], more_schemas: tuple[Tenant, Tenant]
) -> None:
    clash, late = more_schemas

    # when
    out, err = io.StringIO(), io.StringIO()
    with pytest.raises(CommandError) as raised:
        call_command("migrate_schemas", "--noinput", stdout=out, stderr=err)

    # then: the schema after the failing one is migrated; the unusable ones are named, skipped
    assert missing_migrations([late.schema_name]) == {late.schema_name: 0}
    assert clash.schema_name in str(raised.value)
    text = out.getvalue() + err.getvalue()
    for item in broken_committed.values():
        assert f"{item.tenant.schema_name!r}: skipped, {item.why}" in text, text
    assert "1 migrated, " in text and "1 failed" in text and "2 unusable" in text

