"""A walk through the main billing endpoints with a tenant key."""

from __future__ import annotations

from billable.models import Offer, Product
from tests.support.api import Api, assert_problem
from tests.support.tenants import TenantFixture


def test_catalog_grant_balance_consume(
    api: Api, acme: TenantFixture, catalog: dict[str, Product | Offer]
) -> None:
    key = acme.key
    response = api.post(
        "billing/grants",
        json={"external_id": 42, "sku": "reports_10", "kind": "bonus", "reason": "welcome"},
        key=key,
    )
    assert response.status == 201, response.body
    grant = response.json
    assert grant["sku"] == "REPORTS_10" and grant["batches"][0]["remaining"] == 10
    balance = api.get(
        "billing/balance", key=key, query={"external_id": "42", "feature": "report_generation"}
    ).json
    assert balance["can_use"] is True and balance["remaining"] == 10
    consumed = api.post(
        "billing/quota/consume",
        json={"external_id": "42", "feature": "REPORTS", "amount": 3},
        key=key,
    )
    assert consumed.status == 200, consumed.body
    assert consumed.json["remaining"] == 7 and consumed.json["unlimited"] is False
    too_much = api.post(
        "billing/quota/consume", json={"external_id": "42", "feature": "reports", "amount": 8},
        key=key,
    )
    assert assert_problem(too_much, 402, "insufficient_quota")["remaining"] == 7
    nothing = api.post(
        "billing/quota/consume", json={"external_id": "43", "feature": "reports"}, key=key
    )
    assert assert_problem(nothing, 402, "quota_exhausted")["remaining"] == 0
    listing = api.get("billing/balance", key=key, query={"external_id": "42"}).json
    names = {item["feature"]: item["remaining"] for item in listing["items"]}
    assert names == {"REPORTS": 7, "report_generation": 7}
    wallet = api.get("billing/wallet", key=key, query={"external_id": "42"}).json
    assert wallet["balances"] == {"REPORTS": 7}
    entries = api.get("billing/wallet/transactions", key=key, query={"external_id": "42"}).json
    assert [e["direction"] for e in entries["items"]] == ["debit", "credit"]
    batches = api.get("billing/wallet/batches", key=key, query={"external_id": "42"}).json
    assert batches["items"][0]["remaining"] == 7


def test_idempotent_consume_replays(
    api: Api, acme: TenantFixture, catalog: dict[str, Product | Offer]
) -> None:
    key = acme.key
    api.post("billing/grants", json={"external_id": "b", "sku": "reports_10", "kind": "manual"},
             key=key)
    body = {"external_id": "b", "feature": "reports", "amount": 2}
    first = api.post("billing/quota/consume", json=body, key=key,
                     headers={"Idempotency-Key": "k-1"})
    second = api.post("billing/quota/consume", json=body, key=key,
                      headers={"Idempotency-Key": "k-1"})
    assert first.status == second.status == 200
    assert first.body == second.body
    assert second.headers.get("Idempotent-Replayed") == "true"
    assert "Idempotent-Replayed" not in first.headers
    reused = api.post("billing/quota/consume", json={**body, "amount": 1}, key=key,
                      headers={"Idempotency-Key": "k-1"})
    assert_problem(reused, 422, "idempotency_key_reused")
    balance = api.get("billing/balance", key=key,
                      query={"external_id": "b", "feature": "reports"}).json
    assert balance["remaining"] == 8
