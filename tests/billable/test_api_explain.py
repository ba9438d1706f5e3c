"""`GET /billing/balance?explain=true`, `?as_of=` and `GET /billing/entitlements?explain=true`:
what makes up a balance, why a feature cannot be used, and what the balance was."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.db import connection
from django.utils import timezone

from billable import clock
from billable.models import Offer, Product
from billing_platform.operations.services import platform_sweep
from tests.support.api import Api, assert_problem
from tests.support.tenants import TenantFixture

Catalog = dict[str, Product | Offer]
WHO = {"external_id": "sam"}


def _explain(api: Api, key: str, feature: str = "reports", **query: Any) -> dict[str, Any]:
    response = api.get("billing/balance", key=key,
                       query={**WHO, "feature": feature, "explain": "true", **query})
    assert response.status == 200, response.body
    return response.json  # type: ignore[no-any-return]


def _grant(api: Api, key: str, sku: str = "reports_10", **extra: Any) -> dict[str, Any]:
    response = api.post("billing/grants", json={**WHO, "sku": sku, "kind": "bonus", **extra},
                        key=key)
    assert response.status == 201, response.body
    return response.json  # type: ignore[no-any-return]


def _consume(api: Api, key: str, amount: int, feature: str = "reports") -> None:
    response = api.post("billing/quota/consume", json={**WHO, "feature": feature,
                                                       "amount": amount}, key=key)
    assert response.status == 200, response.body


def test_a_usable_feature_lists_its_batches_and_no_reason(
    api: Api, acme: TenantFixture, catalog: Catalog
) -> None:
    grant = _grant(api, acme.key)
    _consume(api, acme.key, 3)
    body = _explain(api, acme.key)
    assert (body["can_use"], body["remaining"]) == (True, 7)
    explain = body["explain"]
    assert explain["reason"] is None and explain["holds"] == [] and explain["reserved"] == 0
    (batch,) = explain["batches"]
    assert (batch["id"], batch["product"], batch["source"], batch["source_id"]) == (
        grant["batches"][0]["id"], "REPORTS", "bonus", grant["id"])
    assert (batch["remaining"], batch["unit_cost"], batch["usable"], batch["state"]) == (
        7, 1, True, "active")
    # the plain check is unchanged: no explain key
    plain = api.get("billing/balance", key=acme.key, query={**WHO, "feature": "reports"}).json
    assert "explain" not in plain and plain["remaining"] == 7


def test_used_up_and_reserved(api: Api, acme: TenantFixture, catalog: Catalog) -> None:
    _grant(api, acme.key, "reports_5_forever")
    hold = api.post("billing/holds", json={**WHO, "feature": "reports", "amount": 5},
                    key=acme.key)
    assert hold.status == 201, hold.body
    held = _explain(api, acme.key)
    assert (held["can_use"], held["explain"]["reason"]) == (False, "reserved_by_holds")
    assert held["explain"]["reserved"] == 5
    assert [h["id"] for h in held["explain"]["holds"]] == [hold.json["id"]]
    committed = api.post(f"billing/holds/{hold.json['id']}/commit", json={}, key=acme.key)
    assert committed.status == 200
    used = _explain(api, acme.key)
    assert used["explain"]["reason"] == "exhausted"
    assert [b["state"] for b in used["explain"]["batches"]] == ["exhausted"]


def test_expired_revoked_not_covered_and_unknown(
    api: Api, acme: TenantFixture, catalog: Catalog
) -> None:
    assert _explain(api, acme.key)["explain"]["reason"] == "unknown_customer"
    assert api.post("billing/identify", json=WHO, key=acme.key).status == 200
    assert _explain(api, acme.key)["explain"]["reason"] == "not_covered"
    grant = _grant(api, acme.key, "reports_5_forever")
    revoked = api.post(f"billing/batches/{grant['batches'][0]['id']}/revoke", json={},
                       key=acme.key)
    assert revoked.status == 200
    assert _explain(api, acme.key)["explain"]["reason"] == "revoked"
    soon = clock.now() + timedelta(hours=1)
    _grant(api, acme.key, expires_at=soon.isoformat())
    with clock.frozen(soon + timedelta(minutes=1)):
        later = _explain(api, acme.key)
    assert (later["can_use"], later["explain"]["reason"]) == (False, "expired")
    assert later["explain"]["batches"] == []


def test_fewer_credits_than_a_unit_costs_is_exhausted(
    api: Api, acme: TenantFixture, catalog: Catalog
) -> None:
    made = api.post("billing/products", json={
        "key": "credits", "name": "Credits", "product_type": "quantity",
        "features": ["large_model"], "credit_costs": {"large_model": 10}}, key=acme.key)
    assert made.status == 201, made.body
    added = api.post("billing/adjustments", json={**WHO, "product": "credits", "amount": 15,
                                                  "reason": "test"}, key=acme.key)
    assert added.status == 201, added.body
    _consume(api, acme.key, 1, "large_model")
    body = _explain(api, acme.key, "large_model")
    assert (body["can_use"], body["remaining"]) == (False, 0)
    assert body["credit_pools"] == [{"product": "CREDITS", "unit_cost": 10, "credits": 5}]
    explain = body["explain"]
    assert explain["reason"] == "exhausted"
    ((batch),) = explain["batches"]
    assert (batch["remaining"], batch["unit_cost"], batch["usable"], batch["source"]) == (
        5, 10, True, "adjustment")
    assert batch["source_id"] == added.json["id"]


def test_paused_and_past_due_subscriptions(
    api: Api, acme: TenantFixture, catalog: Catalog
) -> None:
    assert api.post("billing/plans", json={
        "key": "pro_plan", "name": "Pro", "price": "19.00", "currency": "USD", "trial_days": 7,
        "entitlements": [{"type": "allowance", "product": "reports", "amount": 50}]},
        key=acme.key).status == 201
    sub = api.post("billing/subscriptions", json={**WHO, "plan": "pro_plan"}, key=acme.key).json
    live = _explain(api, acme.key)
    assert live["explain"]["reason"] is None and live["remaining"] == 50
    assert [s["id"] for s in live["explain"]["subscriptions"]] == [sub["id"]]
    assert [b["source"] for b in live["explain"]["batches"]] == ["plan"]
    assert live["explain"]["batches"][0]["source_id"] == sub["id"]
    paused = api.post(f"billing/subscriptions/{sub['id']}/pause", json={}, key=acme.key)
    assert paused.status == 200, paused.body
    body = _explain(api, acme.key)
    assert (body["can_use"], body["explain"]["reason"]) == (False, "paused")
    assert [b["state"] for b in body["explain"]["batches"]] == ["paused"]
    assert api.post(f"billing/subscriptions/{sub['id']}/unpause", json={},
                    key=acme.key).status == 200
    # the trial ends unpaid: past due, and nothing of the plan is usable
    after_trial = clock.now() + timedelta(days=8)
    connection.set_schema_to_public()
    with clock.frozen(after_trial):
        platform_sweep(everything=True)
        connection.set_schema_to_public()
        due = _explain(api, acme.key)
    assert due["can_use"] is False, due
    assert due["explain"]["reason"] == "subscription_past_due"
    assert [(s["id"], s["status"]) for s in due["explain"]["subscriptions"]] == [
        (sub["id"], "past_due")]


def test_balance_as_of_a_past_instant(api: Api, acme: TenantFixture, catalog: Catalog) -> None:
    before_grant = timezone.now()
    _grant(api, acme.key)
    _consume(api, acme.key, 3)
    middle = timezone.now()
    _consume(api, acme.key, 2)
    now = api.get("billing/balance", key=acme.key, query={**WHO, "feature": "reports"}).json
    assert now["remaining"] == 5

    def as_of(at: Any) -> dict[str, Any]:
        response = api.get("billing/balance", key=acme.key,
                           query={**WHO, "feature": "report_generation", "as_of": at.isoformat()})
        assert response.status == 200, response.body
        return response.json  # type: ignore[no-any-return]

    assert (as_of(middle)["remaining"], as_of(middle)["can_use"]) == (7, True)
    assert (as_of(before_grant)["remaining"], as_of(before_grant)["can_use"]) == (0, False)
    assert as_of(timezone.now())["remaining"] == 5
    assert_problem(api.get("billing/balance", key=acme.key,
                           query={**WHO, "as_of": middle.isoformat()}), 422, "validation_error")
    future = (timezone.now() + timedelta(days=1)).isoformat()
    assert_problem(api.get("billing/balance", key=acme.key,
                           query={**WHO, "feature": "reports", "as_of": future}),
                   422, "validation_error")


def test_every_feature_explained_in_the_list_and_the_entitlements(
    api: Api, acme: TenantFixture, catalog: Catalog
) -> None:
    _grant(api, acme.key, "reports_5_forever")
    _consume(api, acme.key, 3)
    listed = api.get("billing/balance", key=acme.key,
                     query={**WHO, "explain": "true"}).json["items"]
    assert {(i["feature"], i["remaining"], i["explain"]["reason"],
             len(i["explain"]["batches"])) for i in listed} == {
        ("REPORTS", 2, None, 1), ("report_generation", 2, None, 1)}
    plain = api.get("billing/entitlements", key=acme.key, query=WHO).json["features"]
    assert all("explain" not in f for f in plain)
    explained = api.get("billing/entitlements", key=acme.key,
                        query={**WHO, "explain": "true"}).json["features"]
    assert sorted((f["feature"], f["explain"]["batches"][0]["remaining"])
                  for f in explained) == [("REPORTS", 2), ("report_generation", 2)]
