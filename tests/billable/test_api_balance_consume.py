"""HTTP tests of `GET /billing/balance` and `POST /billing/quota/consume`."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection

from billable.models import LedgerEntry, Offer, Product, QuotaBatch, Usage
from tests.support.api import Api, assert_problem
from tests.support.tenants import TenantFixture

Catalog = dict[str, Product | Offer]

BALANCE_KEYS = {"customer_id", "feature", "can_use", "remaining", "unlimited", "expires_at",
                "message", "credit_pools"}
USAGE_KEYS = {"usage_id", "customer_id", "feature", "amount", "credits", "remaining",
              "remaining_credits", "unlimited", "metadata", "created_at"}


def _grant(api: Api, key: str, sku: str, external_id: Any = "c1", **extra: Any) -> dict[str, Any]:
    response = api.post(
        "billing/grants",
        json={"external_id": external_id, "sku": sku, "kind": "manual", **extra},
        key=key,
    )
    assert response.status == 201, response.body
    return response.json  # type: ignore[no-any-return]


def _balance(api: Api, key: str, feature: str | None = None, **ref: Any) -> dict[str, Any]:
    query = {"external_id": "c1", **ref}
    if feature is not None:
        query["feature"] = feature
    response = api.get("billing/balance", key=key, query=query)
    assert response.status == 200, response.body
    return response.json  # type: ignore[no-any-return]


def _remaining(acme: TenantFixture) -> int:
    connection.set_schema(acme.tenant.schema_name)
    return sum(QuotaBatch.objects.values_list("remaining", flat=True))


# --- balance


def test_balance_of_quantity_feature(api: Api, acme: TenantFixture, catalog: Catalog) -> None:
    grant = _grant(api, acme.key, "reports_10")
    for name in ("report_generation", "REPORT_GENERATION", "reports", "Reports"):
        body = _balance(api, acme.key, name)
        assert set(body) == BALANCE_KEYS
        assert body["customer_id"] == grant["customer_id"]
        assert body["feature"].lower() == name.lower()
        assert body["can_use"] is True and body["remaining"] == 10
        assert body["unlimited"] is False and body["expires_at"] is None
        assert isinstance(body["message"], str) and body["message"]


def test_balance_of_period_and_unlimited_access(
    api: Api, acme: TenantFixture, catalog: Catalog
) -> None:
    _grant(api, acme.key, "pro_month")
    _grant(api, acme.key, "unl_forever")
    period = _balance(api, acme.key, "priority_support")
    assert period["can_use"] is True and period["unlimited"] is True
    assert period["remaining"] is None and period["expires_at"] is not None
    unlimited = _balance(api, acme.key, "exports")
    assert unlimited["unlimited"] is True and unlimited["remaining"] is None
    assert unlimited["expires_at"] is None


def test_balance_of_feature_nothing_covers(
    api: Api, acme: TenantFixture, catalog: Catalog
) -> None:
    _grant(api, acme.key, "reports_10")
    body = _balance(api, acme.key, "nothing_here")
    assert body["can_use"] is False and body["remaining"] == 0 and body["unlimited"] is False


def test_balance_for_unknown_customer(api: Api, acme: TenantFixture, catalog: Catalog) -> None:
    body = _balance(api, acme.key, "reports", external_id="ghost")
    assert set(body) == BALANCE_KEYS
    assert body["customer_id"] is None and body["can_use"] is False
    assert body["remaining"] == 0 and body["unlimited"] is False


def test_balance_without_feature_lists_every_name(
    api: Api, acme: TenantFixture, catalog: Catalog
) -> None:
    grant = _grant(api, acme.key, "reports_10")
    _grant(api, acme.key, "pro_month")
    body = _balance(api, acme.key)
    assert set(body) == {"customer_id", "items"}
    assert body["customer_id"] == grant["customer_id"]
    by_name = {item["feature"]: item for item in body["items"]}
    assert set(by_name) == {"REPORTS", "report_generation", "PRO", "priority_support"}
    for item in body["items"]:
        assert set(item) == BALANCE_KEYS and item["customer_id"] == grant["customer_id"]
    assert by_name["REPORTS"]["remaining"] == 10
    assert by_name["PRO"]["unlimited"] is True and by_name["PRO"]["remaining"] is None


def test_balance_without_feature_for_customer_with_nothing(
    api: Api, acme: TenantFixture, catalog: Catalog
) -> None:
    made = api.post("billing/identify", json={"external_id": "c1"}, key=acme.key).json
    assert _balance(api, acme.key) == {"customer_id": made["customer_id"], "items": []}


# --- consume


def test_consume_shape_and_effect(api: Api, acme: TenantFixture, catalog: Catalog) -> None:
    grant = _grant(api, acme.key, "reports_10")
    response = api.post(
        "billing/quota/consume",
        json={"external_id": "c1", "feature": "report_generation", "amount": 4,
              "action_id": "job-1", "metadata": {"report": 9}},
        key=acme.key,
    )
    assert response.status == 200, response.body
    body = response.json
    assert set(body) == USAGE_KEYS
    assert body["customer_id"] == grant["customer_id"]
    assert body["amount"] == 4 and body["remaining"] == 6 and body["unlimited"] is False
    assert body["metadata"] == {"report": 9}
    assert _balance(api, acme.key, "reports")["remaining"] == 6
    connection.set_schema(acme.tenant.schema_name)
    usage = Usage.objects.get(pk=body["usage_id"])
    assert usage.action_type == "usage" and usage.action_id == "job-1"
    debit = LedgerEntry.objects.get(direction="debit")
    assert debit.amount == 4 and debit.action_type == "usage" and debit.action_id == "job-1"
    assert debit.actor == f"key:{acme.key_row.pk}"


def test_consume_amount_defaults_to_one(api: Api, acme: TenantFixture, catalog: Catalog) -> None:
    _grant(api, acme.key, "reports_10")
    body = api.post("billing/quota/consume", json={"external_id": "c1", "product_key": "REPORTS"},
                    key=acme.key).json
    assert body["amount"] == 1 and body["remaining"] == 9


def test_consume_soonest_expiry_first(api: Api, acme: TenantFixture, catalog: Catalog) -> None:
    forever = _grant(api, acme.key, "reports_5_forever")["batches"][0]["id"]
    dated = _grant(api, acme.key, "reports_10")["batches"][0]["id"]
    body = api.post("billing/quota/consume", json={"external_id": "c1", "feature": "reports",
                                                   "amount": 12}, key=acme.key).json
    assert body["remaining"] == 3
    connection.set_schema(acme.tenant.schema_name)
    assert QuotaBatch.objects.get(pk=dated).remaining == 0
    assert QuotaBatch.objects.get(pk=forever).remaining == 3


def test_consume_with_period_or_unlimited_access(
    api: Api, acme: TenantFixture, catalog: Catalog
) -> None:
    _grant(api, acme.key, "pro_month")
    _grant(api, acme.key, "unl_forever")
    for feature in ("priority_support", "PRO", "exports", "unl"):
        body = api.post("billing/quota/consume", json={"external_id": "c1", "feature": feature,
                                                       "amount": 50}, key=acme.key).json
        assert body["remaining"] is None and body["unlimited"] is True, feature
    connection.set_schema(acme.tenant.schema_name)
    assert not LedgerEntry.objects.filter(direction="debit").exists()
    assert Usage.objects.count() == 4


def test_consume_402s_change_nothing(api: Api, acme: TenantFixture, catalog: Catalog) -> None:
    _grant(api, acme.key, "reports_10")
    too_many = api.post("billing/quota/consume", json={"external_id": "c1", "feature": "reports",
                                                       "amount": 11}, key=acme.key)
    assert assert_problem(too_many, 402, "insufficient_quota")["remaining"] == 10
    unknown_feature = api.post("billing/quota/consume",
                               json={"external_id": "c1", "feature": "nothing"}, key=acme.key)
    assert assert_problem(unknown_feature, 402, "quota_exhausted")["remaining"] == 0
    assert _remaining(acme) == 10
    connection.set_schema(acme.tenant.schema_name)
    assert Usage.objects.count() == 0
    assert LedgerEntry.objects.filter(direction="debit").count() == 0


def test_consume_exhausted_after_spending_everything(
    api: Api, acme: TenantFixture, catalog: Catalog
) -> None:
    _grant(api, acme.key, "reports_5_forever")
    last = api.post("billing/quota/consume", json={"external_id": "c1", "feature": "reports",
                                                   "amount": 5}, key=acme.key)
    assert last.json["remaining"] == 0
    after = api.post("billing/quota/consume", json={"external_id": "c1", "feature": "reports"},
                     key=acme.key)
    assert assert_problem(after, 402, "quota_exhausted")["remaining"] == 0
    assert _balance(api, acme.key, "reports")["can_use"] is False


@pytest.mark.parametrize(
    "body",
    [
        {"external_id": "c1"},
        {"external_id": "c1", "feature": "reports", "amount": 0},
        {"external_id": "c1", "feature": "reports", "amount": -1},
        {"external_id": "c1", "feature": "reports", "amount": "two"},
        {"external_id": "c1", "feature": "reports", "amount": 1.5},
        {"external_id": "c1", "feature": "bad name!"},
        {"external_id": "c1", "feature": "reports", "metadata": [1]},
        {"external_id": "c1", "feature": "reports", "action_type": ""},
        {"external_id": ["c1"], "feature": "reports"},
    ],
)
def test_consume_validation(
    api: Api, acme: TenantFixture, catalog: Catalog, body: dict[str, Any]
) -> None:
    _grant(api, acme.key, "reports_10")
    response = api.post("billing/quota/consume", json=body, key=acme.key)
    errors = assert_problem(response, 422, "validation_error")["errors"]
    assert errors and all({"loc", "msg"} <= set(e) for e in errors)
    assert _remaining(acme) == 10


def test_consume_body_must_be_json_object(api: Api, acme: TenantFixture, catalog: Catalog) -> None:
    malformed = api.request("POST", "billing/quota/consume", key=acme.key, body=b"{nope",
                            content_type="application/json")
    assert_problem(malformed, 400, "malformed_json")
    form = api.request("POST", "billing/quota/consume", key=acme.key, body=b"a=b",
                       content_type="application/x-www-form-urlencoded")
    assert_problem(form, 415, "unsupported_media_type")
    raw = api.client.generic("POST", "/api/v1/billing/quota/consume", HTTP_X_API_KEY=acme.key)
    # No body and no content type means `{}`: consume still needs a customer and a feature.
    assert raw.status_code == 422
    assert raw.json()["code"] == "validation_error" and raw.json()["errors"]
