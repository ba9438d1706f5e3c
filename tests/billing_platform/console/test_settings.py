"""The settings page: every member reads the tenant's settings, an owner changes them through
the service behind `PATCH /api/v1/settings`, once per form, audited with old and new values, and
refused as the API refuses, beside the field."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.utils.html import escape

from billing_platform.console.models import AuditEntry
from tenants.models import Tenant
from tests.support.api import Api
from tests.support.console import form_key, make_member, signed_in_client
from tests.support.tenants import TenantFixture

URL = "/console/settings/"


def _member(tenant: Tenant, role: str) -> Client:
    make_member(tenant, f"{role}@example.com", role)
    return signed_in_client(f"{role}@example.com")


def _form(page: bytes, **changes: Any) -> dict[str, Any]:
    """The settings form as the page shows it (defaults), with `changes`."""
    fields: dict[str, Any] = {
        "form_key": form_key(page),
        "low_balance_threshold": "0",
        "idempotency_retention_days": "7",
        "referral_reward_sku": "",
        "referee_reward_sku": "",
        "subscription_grace_days": "3",
        "subscription_renewal_notice_days": "3",
    }
    fields.update(changes)
    return {name: value for name, value in fields.items() if value is not None}


def _settings(tenant: Tenant) -> dict[str, Any]:
    return Tenant.objects.get(pk=tenant.pk).merged_settings


@pytest.mark.parametrize("role", ["viewer", "support", "admin"])
def test_members_read_the_settings_and_only_an_owner_may_change_them(
    acme: TenantFixture, role: str
) -> None:
    client = _member(acme.tenant, role)
    page = client.get(URL)
    html = page.content.decode()
    assert page.status_code == 200
    assert 'id="settings-read"' in html and "Idempotency retention days" in html
    assert 'name="idempotency_retention_days"' not in html and "form_key" not in html

    refused = client.post(URL, {"form_key": "k" * 24, "idempotency_retention_days": "9"})

    assert refused.status_code == 403
    assert _settings(acme.tenant)["idempotency_retention_days"] == 7
    assert not AuditEntry.objects.filter(action="settings.update").exists()


def test_the_owner_changes_settings_through_the_apis_service_audited(
    api: Api, acme: TenantFixture
) -> None:
    client = _member(acme.tenant, "owner")
    page = client.get(URL)
    assert 'type="number" name="idempotency_retention_days" value="7"' in page.content.decode()

    response = client.post(
        URL,
        _form(
            page.content,
            idempotency_retention_days="14",
            public_catalog="on",
            referral_reward_sku="bonus_pack",
        ),
        follow=True,
    )

    assert response.redirect_chain == [(URL, 302)]
    assert "Settings saved" in response.content.decode()
    # The API reads what the console wrote (the SKU upper-cased by the API's own schema).
    body = api.get("settings", key=acme.key).json
    assert body["idempotency_retention_days"] == 14 and body["public_catalog"] is True
    assert body["referral_reward_sku"] == "BONUS_PACK"
    entry = AuditEntry.objects.get(tenant=acme.tenant, action="settings.update")
    assert entry.actor == "owner@example.com" and entry.target == "settings"
    assert entry.detail == {
        "changes": {
            "idempotency_retention_days": {"old": 7, "new": 14},
            "public_catalog": {"old": False, "new": True},
            "referral_reward_sku": {"old": None, "new": "BONUS_PACK"},
        }
    }

    # Emptying a SKU clears it, as null does in the API.
    page = client.get(URL)
    client.post(
        URL,
        _form(page.content, idempotency_retention_days="14", public_catalog="on"),
    )
    assert _settings(acme.tenant)["referral_reward_sku"] is None


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("idempotency_retention_days", "31"),
        ("subscription_grace_days", "366"),
        ("subscription_renewal_notice_days", "0"),
        ("referral_reward_sku", "no spaces"),
    ],
)
def test_what_the_api_refuses_is_refused_beside_the_field(
    api: Api, acme: TenantFixture, name: str, value: str
) -> None:
    client = _member(acme.tenant, "owner")
    page = client.get(URL)
    coerced: Any = int(value) if value.isdigit() else value
    problem = api.patch("settings", json={name: coerced}, key=acme.key)
    assert problem.status == 422

    response = client.post(
        URL, _form(page.content, **{name: value, "low_balance_threshold": "5"})
    )

    assert response.status_code == 422
    form = response.context["form"]
    assert list(form.errors) == [name]
    # The API's own words (its problem lists the schema's message).
    assert form.errors[name] == [error["msg"] for error in problem.json["errors"]]
    html = response.content.decode()
    assert html.index(f'name="{name}"') < html.index(escape(form.errors[name][0]))
    # Nothing applied, the valid field neither.
    assert _settings(acme.tenant)["low_balance_threshold"] == 0
    assert not AuditEntry.objects.filter(action="settings.update").exists()


def test_a_missing_number_is_asked_for_in_plain_words(acme: TenantFixture) -> None:
    client = _member(acme.tenant, "owner")
    page = client.get(URL)
    response = client.post(URL, _form(page.content, subscription_grace_days=""))
    assert response.status_code == 422
    assert response.context["form"].errors["subscription_grace_days"] == [
        "This field is required."
    ]


def test_a_double_submitted_settings_form_applies_once(acme: TenantFixture) -> None:
    client = _member(acme.tenant, "owner")
    fields = _form(client.get(URL).content, low_balance_threshold="25")

    first = client.post(URL, fields, follow=True)
    second = client.post(URL, fields, follow=True)

    assert "Settings saved: low balance threshold." in first.content.decode()
    assert second.status_code == 200 and "Settings saved" not in second.content.decode()
    assert _settings(acme.tenant)["low_balance_threshold"] == 25
    assert AuditEntry.objects.filter(action="settings.update").count() == 1


def test_unchanged_settings_change_nothing(acme: TenantFixture) -> None:
    client = _member(acme.tenant, "owner")
    response = client.post(URL, _form(client.get(URL).content), follow=True)
    assert "Nothing to change" in response.content.decode()
    assert not AuditEntry.objects.filter(action="settings.update").exists()


def test_the_settings_are_the_current_tenants_only(
    acme: TenantFixture, globex: TenantFixture
) -> None:
    client = _member(acme.tenant, "owner")
    fields = _form(client.get(URL).content, low_balance_threshold="9")
    # A form field naming another tenant is not read: the tenant comes from the membership.
    fields["tenant"] = str(globex.tenant.pk)
    fields["tenant_id"] = str(globex.tenant.pk)

    client.post(URL, fields)

    assert _settings(acme.tenant)["low_balance_threshold"] == 9
    assert _settings(globex.tenant)["low_balance_threshold"] == 0
    assert "Globex" not in client.get(URL).content.decode()


def test_the_settings_form_needs_its_csrf_token(acme: TenantFixture) -> None:
    make_member(acme.tenant, "owner@example.com", "owner")
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(User.objects.get(username="owner@example.com"))
    page = browser.get(URL)
    response = browser.post(URL, _form(page.content, low_balance_threshold="3"))
    assert response.status_code == 403
    assert _settings(acme.tenant)["low_balance_threshold"] == 0
