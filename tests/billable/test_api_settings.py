"""HTTP tests of `GET/PATCH /settings`."""

from __future__ import annotations

from typing import Any

import pytest

from tenants.models import Tenant
from tests.support.api import Api, assert_problem
from tests.support.tenants import TenantFixture, make_key

SETTINGS_KEYS = {"low_balance_threshold", "idempotency_retention_days", "referral_reward_sku",
                 "referee_reward_sku", "public_catalog", "subscription_grace_days",
                 "subscription_renewal_notice_days", "referral_require_known_referrer"}


def test_settings_get_defaults(api: Api, acme: TenantFixture) -> None:
    response = api.get("settings", key=acme.key)
    assert response.status == 200, response.body
    body = response.json
    assert set(body) == SETTINGS_KEYS
    assert body["idempotency_retention_days"] == 7
    assert body["low_balance_threshold"] == 0
    assert body["referral_reward_sku"] is None and body["referee_reward_sku"] is None
    assert body["public_catalog"] is False
    assert body["subscription_grace_days"] == 3
    assert body["subscription_renewal_notice_days"] == 3
    assert body["referral_require_known_referrer"] is False


@pytest.mark.parametrize(("name", "least"), [
    ("subscription_grace_days", 0), ("subscription_renewal_notice_days", 1),
])
def test_subscription_day_settings_bounds(
    api: Api, acme: TenantFixture, name: str, least: int
) -> None:
    assert api.patch("settings", json={name: least}, key=acme.key).json[name] == least
    assert api.patch("settings", json={name: least - 1}, key=acme.key).status == 422
    assert api.patch("settings", json={name: 366}, key=acme.key).status == 422
    api.patch("settings", json={name: 3}, key=acme.key)


def test_settings_patch(api: Api, acme: TenantFixture, globex: TenantFixture) -> None:
    response = api.patch(
        "settings",
        json={"low_balance_threshold": 5, "idempotency_retention_days": 30,
              "referral_reward_sku": "bonus_pack", "public_catalog": True},
        key=acme.key,
    )
    assert response.status == 200, response.body
    body = response.json
    assert body["low_balance_threshold"] == 5 and body["idempotency_retention_days"] == 30
    assert body["referral_reward_sku"] == "BONUS_PACK" and body["public_catalog"] is True
    assert api.get("settings", key=acme.key).json == body
    assert Tenant.objects.get(pk=acme.tenant.pk).merged_settings["low_balance_threshold"] == 5
    # Only the fields sent change.
    partial = api.patch("settings", json={"referee_reward_sku": "x1"}, key=acme.key).json
    assert partial == {**body, "referee_reward_sku": "X1"}
    # The other tenant keeps its own.
    assert api.get("settings", key=globex.key).json["low_balance_threshold"] == 0


@pytest.mark.parametrize(
    "body",
    [
        {"idempotency_retention_days": 0},
        {"idempotency_retention_days": 31},
        {"low_balance_threshold": -1},
        {"referral_reward_sku": "no spaces"},
        {"public_catalog": "sometimes"},
        {"referral_require_known_referrer": "perhaps"},
    ],
)
def test_settings_patch_validation(api: Api, acme: TenantFixture, body: dict[str, Any]) -> None:
    before = api.get("settings", key=acme.key).json
    assert assert_problem(api.patch("settings", json=body, key=acme.key), 422,
                          "validation_error")["errors"]
    assert api.get("settings", key=acme.key).json == before


def test_settings_needs_admin(api: Api, acme: TenantFixture) -> None:
    _row, raw = make_key(acme.tenant, scopes=["billing:read", "billing:write", "billing:grant"])
    assert_problem(api.get("settings", key=raw), 403, "insufficient_scope")
    assert_problem(api.patch("settings", json={"low_balance_threshold": 1}, key=raw), 403,
                   "insufficient_scope")
    assert api.get("settings", key=acme.key).json["low_balance_threshold"] == 0


def test_referral_require_known_referrer_is_switched_on_and_off(
    api: Api, acme: TenantFixture
) -> None:
    on = api.patch("settings", json={"referral_require_known_referrer": True}, key=acme.key)
    assert on.status == 200 and on.json["referral_require_known_referrer"] is True
    # null leaves it as it is
    kept = api.patch("settings", json={"referral_require_known_referrer": None}, key=acme.key)
    assert kept.json["referral_require_known_referrer"] is True
    off = api.patch("settings", json={"referral_require_known_referrer": False}, key=acme.key)
    assert off.json["referral_require_known_referrer"] is False
