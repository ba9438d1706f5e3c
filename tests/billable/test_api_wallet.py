"""HTTP tests of `/billing/wallet`, `/wallet/batches` and `/wallet/transactions`."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

from billable.models import Offer, Product
from tests.support.api import Api, assert_problem
from tests.support.tenants import TenantFixture

Catalog = dict[str, Product | Offer]

ENTRY_KEYS = {"id", "batch_id", "product", "direction", "amount", "action_type", "action_id",
              "actor", "metadata", "created_at"}


def _grant(api: Api, key: str, sku: str, **extra: Any) -> dict[str, Any]:
    response = api.post("billing/grants", json={"external_id": "w", "sku": sku,
                                                "kind": "manual", **extra}, key=key)
    assert response.status == 201, response.body
    return response.json  # type: ignore[no-any-return]


def _consume(api: Api, key: str, amount: int, **extra: Any) -> dict[str, Any]:
    response = api.post("billing/quota/consume", json={"external_id": "w", "feature": "reports",
                                                       "amount": amount, **extra}, key=key)
    assert response.status == 200, response.body
    return response.json  # type: ignore[no-any-return]


def test_wallet_balances(api: Api, acme: TenantFixture, catalog: Catalog) -> None:
    grant = _grant(api, acme.key, "reports_10")
    _grant(api, acme.key, "reports_5_forever")
    _grant(api, acme.key, "pro_month")
    _grant(api, acme.key, "unl_forever")
    _consume(api, acme.key, 2)
    response = api.get("billing/wallet", key=acme.key, query={"external_id": "w"})
    assert response.status == 200
    assert response.json == {
        "customer_id": grant["customer_id"],
        "balances": {"REPORTS": 13, "PRO": None, "UNL": None},
    }
    by_id = api.get("billing/wallet", key=acme.key, query={"customer_id": grant["customer_id"]})
    assert by_id.json == response.json


def test_wallet_ignores_unusable_batches(api: Api, acme: TenantFixture, catalog: Catalog) -> None:
    batch = _grant(api, acme.key, "reports_10")["batches"][0]
    _grant(api, acme.key, "reports_5_forever")
    api.post(f"billing/batches/{batch['id']}/revoke", json={}, key=acme.key)
    assert api.get("billing/wallet", key=acme.key, query={"external_id": "w"}).json[
        "balances"
    ] == {"REPORTS": 5}
    listed = api.get("billing/wallet/batches", key=acme.key, query={"external_id": "w"}).json
    assert [b["initial"] for b in listed["items"]] == [5]


def test_wallet_batches_in_consumption_order(
    api: Api, acme: TenantFixture, catalog: Catalog
) -> None:
    soon = datetime.now(UTC) + timedelta(days=2)
    forever = _grant(api, acme.key, "reports_5_forever")["batches"][0]["id"]
    month = _grant(api, acme.key, "reports_10")["batches"][0]["id"]
    two_days = _grant(api, acme.key, "reports_10", expires_at=soon.isoformat())["batches"][0]["id"]
    unl = _grant(api, acme.key, "unl_forever")["batches"][0]["id"]
    body = api.get("billing/wallet/batches", key=acme.key, query={"external_id": "w"}).json
    assert [b["id"] for b in body["items"]] == [two_days, month, forever, unl]
    assert body["next_cursor"] is None
    seen: list[str] = []
    cursor = None
    while True:
        query: dict[str, Any] = {"external_id": "w", "limit": 1}
        if cursor:
            query["cursor"] = cursor
        page = api.get("billing/wallet/batches", key=acme.key, query=query).json
        assert len(page["items"]) <= 1
        seen += [b["id"] for b in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [two_days, month, forever, unl]


def test_wallet_transactions_newest_first(api: Api, acme: TenantFixture, catalog: Catalog) -> None:
    grant = _grant(api, acme.key, "reports_10")
    _consume(api, acme.key, 3, action_id="a1", metadata={"m": 1})
    body = api.get("billing/wallet/transactions", key=acme.key, query={"external_id": "w"}).json
    assert body["next_cursor"] is None
    debit, credit = body["items"]
    assert set(debit) == ENTRY_KEYS
    assert debit["direction"] == "debit" and debit["amount"] == 3
    assert debit["action_type"] == "usage" and debit["action_id"] == "a1"
    assert debit["product"] == "REPORTS" and debit["batch_id"] == grant["batches"][0]["id"]
    assert debit["actor"] == f"key:{acme.key_row.pk}"
    assert credit["direction"] == "credit" and credit["amount"] == 10


def test_wallet_transactions_filters(api: Api, acme: TenantFixture, catalog: Catalog) -> None:
    _grant(api, acme.key, "reports_10")
    _grant(api, acme.key, "pro_month")
    _consume(api, acme.key, 1, action_type="usage")
    time.sleep(0.01)
    middle = datetime.now(UTC)
    time.sleep(0.01)
    _consume(api, acme.key, 2, action_type="export")

    def entries(**query: Any) -> list[dict[str, Any]]:
        response = api.get("billing/wallet/transactions", key=acme.key,
                           query={"external_id": "w", **query})
        assert response.status == 200, response.body
        return response.json["items"]  # type: ignore[no-any-return]

    assert len(entries()) == 4
    assert {e["product"] for e in entries(product="pro")} == {"PRO"}
    assert len(entries(product="Reports")) == 3
    assert [e["amount"] for e in entries(action_type="export")] == [2]
    assert [e["amount"] for e in entries(since=middle.isoformat())] == [2]
    assert entries(product="nothing") == []
    first = api.get("billing/wallet/transactions", key=acme.key,
                    query={"external_id": "w", "limit": 3}).json
    rest = api.get("billing/wallet/transactions", key=acme.key,
                   query={"external_id": "w", "limit": 3, "cursor": first["next_cursor"]}).json
    assert [e["id"] for e in first["items"] + rest["items"]] == [e["id"] for e in entries()]
    assert rest["next_cursor"] is None
    assert_problem(api.get("billing/wallet/transactions", key=acme.key,
                           query={"external_id": "w", "since": "yesterday"}),
                   422, "validation_error")


def test_wallet_transactions_only_this_customer(
    api: Api, acme: TenantFixture, catalog: Catalog
) -> None:
    _grant(api, acme.key, "reports_10")
    api.post("billing/grants", json={"external_id": "other", "sku": "reports_10",
                                     "kind": "manual"}, key=acme.key)
    body = api.get("billing/wallet/transactions", key=acme.key, query={"external_id": "w"}).json
    assert len(body["items"]) == 1
    batches = api.get("billing/wallet/batches", key=acme.key, query={"external_id": "w"}).json
    assert len(batches["items"]) == 1


def test_wallet_batches_of_one_product(api: Api, acme: TenantFixture, catalog: Catalog) -> None:
    for sku in ("reports_10", "pro_month", "reports_5_forever"):
        made = api.post("billing/grants", json={"external_id": "bp", "sku": sku,
                                                "kind": "bonus"}, key=acme.key)
        assert made.status == 201, made.body
    every = api.get("billing/wallet/batches", key=acme.key, query={"external_id": "bp"}).json
    assert {b["product"] for b in every["items"]} == {"REPORTS", "PRO"}
    reports = api.get("billing/wallet/batches", key=acme.key,
                      query={"external_id": "bp", "product": "reports"}).json
    assert [b["product"] for b in reports["items"]] == ["REPORTS", "REPORTS"]
    none = api.get("billing/wallet/batches", key=acme.key,
                   query={"external_id": "bp", "product": "nothing"}).json
    assert none["items"] == []
    assert_problem(api.get("billing/wallet/batches", key=acme.key,
                           query={"external_id": "bp", "product": "x" * 65}),
                   422, "validation_error")
