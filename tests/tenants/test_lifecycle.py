"""Exporting a tenant's data and deleting a tenant for good, against committed real schemas.

Each test onboards its own tenant, fills it through the API (a webhook endpoint, a grant and an
idempotent consume, so events and deliveries exist too) and removes whatever is left afterwards.
"""

from __future__ import annotations

import io
import json
import secrets
from collections import Counter
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
from django_tenants.utils import schema_context

from billable.models import IdempotencyRecord
from billing_platform.console.models import Invitation
from billing_platform.operations.lifecycle import _tenant_models, tenants_purge_due
from billing_platform.webhooks.models import Delivery, DeliveryAttempt, Endpoint, Event
from tenants.models import ApiKey, Domain, Tenant
from tenants.services import tenant_onboard
from tests.support.api import Api, assert_problem
from tests.support.billing import reports_catalog
from tests.support.console import make_member
from tests.support.tenants import TenantFixture


@dataclass
class Filled:
    tenant: Tenant
    key: str
    endpoint_secret: str


def test_the_module_runs_on_the_test_database(db: None) -> None:
    assert str(connection.settings_dict["NAME"]).startswith("test_")


def _schema_exists(name: str) -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM information_schema.schemata WHERE schema_name = %s", [name])
        return cursor.fetchone() is not None


@pytest.fixture
def filled(committed: None, api: Api, settings: Any) -> Iterator[Filled]:
    # The endpoint is never called; a loopback URL keeps the test off the network.
    settings.WEBHOOKS_ALLOW_PRIVATE_NETWORKS = True
    tenant, _key_row, raw = tenant_onboard(name="Leaving", slug=f"leave-{secrets.token_hex(4)}",
                                           rate_limit="0")
    try:
        reports_catalog(tenant, units=10)
        endpoint = api.post("webhooks/endpoints", json={"url": "http://127.0.0.1:9/hook"},
                            key=raw)
        assert endpoint.status == 201, endpoint.body
        grant = api.post("billing/grants", key=raw,
                         json={"external_id": "ann", "sku": "reports_10", "kind": "manual"})
        assert grant.status == 201, grant.body
        consume = api.post("billing/quota/consume", key=raw, headers={"Idempotency-Key": "c-1"},
                           json={"external_id": "ann", "feature": "reports", "amount": 3})
        assert consume.status == 200, consume.body
        delivery = Delivery.objects.filter(event__tenant=tenant).first()
        assert delivery is not None
        DeliveryAttempt.objects.create(delivery=delivery, status_code=500, error="down")
        yield Filled(tenant=tenant, key=raw, endpoint_secret=endpoint.json["secret"])
    finally:
        connection.set_schema_to_public()
        leftover = Tenant.objects.filter(pk=tenant.pk).first()
        if leftover is not None:
            call_command("delete_tenant", leftover.slug, "--confirm", leftover.slug,
                         stdout=io.StringIO())


def _read(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines()]


def test_export_writes_every_row_as_json_lines_without_secrets(
    filled: Filled, tmp_path: Path
) -> None:
    # when
    target = tmp_path / "leaving.jsonl"
    err = io.StringIO()
    call_command("export_tenant", filled.tenant.slug, "--output", str(target), stderr=err)

    # then: one object per line with its model, read back in full
    text = target.read_text()
    lines = _read(text)
    by_model = Counter(line["model"] for line in lines)
    assert lines[0]["model"] == "export" and lines[0]["row"]["slug"] == filled.tenant.slug
    assert by_model["tenants.tenant"] == 1
    assert by_model["tenants.apikey"] == 1
    assert by_model["webhooks.endpoint"] == 1
    assert by_model["webhooks.event"] >= 2 and by_model["webhooks.delivery"] >= 2
    # every billing table of the schema, row for row
    with schema_context(filled.tenant.schema_name):
        expected = {m._meta.label_lower: m._default_manager.count() for m in _tenant_models()}
    assert expected["billable.ledgerentry"] == 2 and expected["billable.usage"] == 1
    assert {label: by_model[label] for label in expected} == expected
    assert f"Exported {len(lines)} rows" in err.getvalue()

    rows = {line["model"]: line["row"] for line in lines}
    assert rows["tenants.tenant"]["slug"] == filled.tenant.slug
    assert rows["billable.customer"]["id"]
    assert rows["billable.quotabatch"]["remaining"] == 7
    with schema_context(filled.tenant.schema_name):
        stored = IdempotencyRecord.objects.get(key="c-1")
    assert stored.body is not None
    # The record is listed, not its stored answer (an answer to POST /keys holds a key).
    record = rows["billable.idempotencyrecord"]
    assert record["key"] == "c-1" and record["status_code"] == stored.status_code
    assert "body" not in record
    # no secrets: not the key, its hash, the webhook secret or the identity secret
    key_row = ApiKey.objects.get(tenant=filled.tenant)
    for secret in (filled.key, key_row.key_hash, filled.endpoint_secret,
                   filled.tenant.identity_secret):
        assert secret not in text
    assert "key_hash" not in rows["tenants.apikey"]
    assert rows["tenants.apikey"]["lookup_id"] == key_row.lookup_id
    assert "secret_encrypted" not in rows["webhooks.endpoint"]
    assert "identity_secret" not in rows["tenants.tenant"]


def test_export_to_stdout_matches_the_file(filled: Filled, tmp_path: Path) -> None:
    out = io.StringIO()
    call_command("export_tenant", filled.tenant.slug, stdout=out, stderr=io.StringIO())
    target = tmp_path / "x.jsonl"
    call_command("export_tenant", filled.tenant.slug, "-o", str(target), stderr=io.StringIO())
    strip = [{**line, "row": {}} if line["model"] == "export" else line
             for line in _read(out.getvalue())]
    again = [{**line, "row": {}} if line["model"] == "export" else line
             for line in _read(target.read_text())]
    assert strip == again


def test_export_of_an_unknown_tenant_fails_clearly(committed: None, tmp_path: Path) -> None:
    target = tmp_path / "none.jsonl"
    with pytest.raises(CommandError, match="no tenant 'nobody-here'"):
        call_command("export_tenant", "nobody-here", "-o", str(target))
    assert not target.exists()


@pytest.mark.parametrize("confirm", [None, "someone-else"])
def test_delete_refuses_without_the_confirmation(filled: Filled, api: Api,
                                                 confirm: str | None) -> None:
    args = [filled.tenant.slug] + (["--confirm", confirm] if confirm else [])
    with pytest.raises(CommandError, match="refusing to delete"):
        call_command("delete_tenant", *args)
    # nothing changed
    assert _schema_exists(filled.tenant.schema_name)
    assert api.get("keys", key=filled.key).status == 200


def test_delete_drops_the_schema_and_every_row(
    filled: Filled, api: Api, committed_tenants: dict[str, TenantFixture]
) -> None:
    # given: the key works and its resolution is cached
    assert api.get("keys", key=filled.key).status == 200
    tenant = filled.tenant

    # when
    out = io.StringIO()
    call_command("delete_tenant", tenant.slug, "--confirm", tenant.slug, stdout=out)

    # then
    assert f"Tenant {tenant.slug} deleted" in out.getvalue()
    assert not _schema_exists(tenant.schema_name)
    assert not Tenant.objects.filter(pk=tenant.pk).exists()
    assert not ApiKey.objects.filter(tenant_id=tenant.pk).exists()
    assert not Domain.objects.filter(tenant_id=tenant.pk).exists()
    assert not Endpoint.objects.filter(tenant_id=tenant.pk).exists()
    assert not Event.objects.filter(tenant_id=tenant.pk).exists()
    assert not Delivery.objects.filter(endpoint__tenant_id=tenant.pk).exists()
    assert not DeliveryAttempt.objects.filter(delivery__event__tenant_id=tenant.pk).exists()
    assert_problem(api.get("keys", key=filled.key), 401, "not_authenticated")
    # the other tenants are untouched
    acme = committed_tenants["acme"]
    assert _schema_exists(acme.tenant.schema_name)
    assert api.get("keys", key=acme.key).status == 200


def test_a_deletion_request_is_purged_once_its_time_has_come(
    filled: Filled, api: Api, platform_key_committed: str
) -> None:
    # given: the platform API's DELETE suspends and revokes at once
    tenant = filled.tenant
    response = api.delete(f"platform/tenants/{tenant.slug}", key=platform_key_committed,
                          query={"confirm": tenant.slug})
    assert response.status == 202, response.body
    assert_problem(api.get("keys", key=filled.key), 401, "api_key_revoked")

    # when: the grace period has not passed, nothing is dropped
    assert tenants_purge_due() == []
    assert _schema_exists(tenant.schema_name)

    # when: it has
    later = timezone.now() + timedelta(hours=25)
    assert tenants_purge_due(now=later) == [tenant.slug]

    # then
    assert not _schema_exists(tenant.schema_name)
    assert not Tenant.objects.filter(pk=tenant.pk).exists()
    assert_problem(api.get("keys", key=filled.key), 401, "not_authenticated")


@pytest.fixture
def platform_key_committed(committed: None) -> Iterator[str]:
    from tenants.models import PlatformKey
    from tenants.services import platform_key_create

    key, raw = platform_key_create(name="lifecycle")
    yield raw
    PlatformKey.objects.filter(pk=key.pk).delete()


def test_export_holds_the_consoles_rows_without_the_invitation_hash(
    filled: Filled, tmp_path: Path
) -> None:
    """Public rows of apps the export does not name (the console's) are found by their foreign
    key to the tenant: members, invitations (without their token's hash) and the audit log."""
    member = make_member(filled.tenant, "owner@leaving.example", "owner")
    out = io.StringIO()
    call_command(
        "console_invite", filled.tenant.slug, "new@leaving.example", "--role", "viewer",
        stdout=out,
    )
    invitation = Invitation.objects.get(tenant=filled.tenant)
    try:
        target = tmp_path / "leaving.jsonl"
        call_command("export_tenant", filled.tenant.slug, "-o", str(target), stderr=io.StringIO())
        text = target.read_text()
        rows: dict[str, list[dict[str, Any]]] = {}
        for line in _read(text):
            rows.setdefault(line["model"], []).append(line["row"])

        (membership,) = rows["console.membership"]
        assert (membership["user_id"], membership["role"]) == (member.pk, "owner")
        (invited,) = rows["console.invitation"]
        assert invited["email"] == "new@leaving.example" and "token_hash" not in invited
        assert invitation.token_hash not in text
        (audit,) = rows["console.auditentry"]
        assert (audit["action"], audit["actor"]) == ("invitation.created", "operator")
    finally:
        member.delete()
