"""HTTP tests of `GET /billing/entitlements`, and how subscriptions' values combine."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from django.db import connection

from billable import clock
from billable.selectors.entitlements import merge_values
from billable.services.subscriptions import subscriptions_advance_all
from tests.support.api import Api, assert_problem
from tests.support.tenants import TenantFixture

Catalog = dict[str, Any]


def _plan(api: Api, acme: TenantFixture, key: str, *entitlements: dict[str, Any],
          price: str = "0") -> None:
    body = {"key": key, "name": key, "price": price, "currency": "USD",
            "entitlements": list(entitlements)}
    response = api.post("billing/plans", json=body, key=acme.key)
    assert response.status == 201, response.body


def _subscribe(api: Api, acme: TenantFixture, who: str, plan: str) -> dict[str, Any]:
    response = api.post("billing/subscriptions", json={"external_id": who, "plan": plan},
                        key=acme.key)
    assert response.status == 201, response.body
    return response.json


def test_entitlements_of_two_plans_and_a_purchase(
    api: Api, acme: TenantFixture, catalog: Catalog
) -> None:
    # given: a free monthly plan (100 reports, Pro access, two values) and a paid one resetting
    # daily (5 reports, other values), and 10 purchased reports
    _plan(api, acme, "base",
          {"type": "allowance", "product": "reports", "amount": 100},
          {"type": "access", "product": "pro"},
          {"type": "value", "name": "max_projects", "value": 5},
          {"type": "value", "name": "models", "value": ["small"]})
    _plan(api, acme, "extra",
          {"type": "allowance", "product": "reports", "amount": 5, "reset_unit": "days"},
          {"type": "value", "name": "max_projects", "value": 20},
          {"type": "value", "name": "models", "value": ["small", "large"]},
          {"type": "value", "name": "region", "value": "eu"},
          price="3")
    base = _subscribe(api, acme, "ent", "base")
    extra = _subscribe(api, acme, "ent", "extra")
    bought = api.post("billing/grants", json={"external_id": "ent", "sku": "reports_10",
                                              "kind": "bonus"}, key=acme.key)
    assert bought.status == 201, bought.body
    api.post("billing/quota/consume", json={"external_id": "ent", "feature": "reports",
                                            "amount": 7}, key=acme.key)

    # when
    response = api.get("billing/entitlements", key=acme.key, query={"external_id": "ent"})

    # then
    assert response.status == 200, response.body
    body = response.json
    features = {item["feature"]: item for item in body["features"]}
    reports = features["report_generation"]
    assert (reports["can_use"], reports["remaining"], reports["allowance"]) == (True, 108, 105)
    daily_end = extra["current_period_start"]  # the daily reset is one day after the start
    assert reports["next_reset"] is not None and reports["next_reset"] > daily_end
    assert reports["next_reset"] < base["current_period_end"]
    assert features["priority_support"]["can_use"] is True
    assert features["priority_support"]["allowance"] is None
    assert body["values"] == {"max_projects": 20, "models": ["small", "large"], "region": "eu"}
    subs = {item["plan"]: item for item in body["subscriptions"]}
    assert subs["BASE"]["renews_at"] == base["current_period_end"]
    assert subs["EXTRA"]["ends_at"] is None and subs["EXTRA"]["paid_through"]

    # a cancellation at period end: the end is shown instead of a renewal
    api.post(f"billing/subscriptions/{base['id']}/cancel", json={}, key=acme.key)
    after = api.get("billing/entitlements", key=acme.key, query={"external_id": "ent"}).json
    subs = {item["plan"]: item for item in after["subscriptions"]}
    assert (subs["BASE"]["renews_at"], subs["BASE"]["ends_at"]) == (
        None, base["current_period_end"]
    )


def test_a_used_up_allowance_is_listed_with_its_reset(
    api: Api, acme: TenantFixture, catalog: Catalog
) -> None:
    _plan(api, acme, "small", {"type": "allowance", "product": "reports", "amount": 2})
    sub = _subscribe(api, acme, "empty", "small")
    consumed = api.post("billing/quota/consume", json={"external_id": "empty",
                                                       "feature": "reports", "amount": 2},
                        key=acme.key)
    assert consumed.status == 200, consumed.body
    body = api.get("billing/entitlements", key=acme.key, query={"external_id": "empty"}).json
    features = {item["feature"]: item for item in body["features"]}
    assert features["report_generation"]["can_use"] is False
    assert features["report_generation"]["remaining"] == 0
    assert features["report_generation"]["next_reset"] == sub["current_period_end"]


def test_past_due_holds_nothing_and_unknown_customers_nothing(
    api: Api, acme: TenantFixture, catalog: Catalog
) -> None:
    _plan(api, acme, "paid", {"type": "allowance", "product": "reports", "amount": 3},
          {"type": "value", "name": "seats", "value": 2}, price="9")
    sub = _subscribe(api, acme, "late", "paid")
    later = clock.now() + timedelta(days=32)
    with clock.frozen(later):
        connection.set_schema(acme.tenant.schema_name)
        subscriptions_advance_all()
        body = api.get("billing/entitlements", key=acme.key, query={"external_id": "late"}).json
    # past due: listed with its expiry, but its values and allowance are not in force
    (listed,) = body["subscriptions"]
    assert (listed["id"], listed["status"], listed["renews_at"]) == (sub["id"], "past_due", None)
    ends_at = datetime.fromisoformat(listed["ends_at"])
    assert ends_at == datetime.fromisoformat(listed["paid_through"]) + timedelta(days=3)
    assert body["values"] == {}
    assert all(item["allowance"] is None for item in body["features"])
    unknown = api.get("billing/entitlements", key=acme.key, query={"external_id": "nobody"})
    assert unknown.status == 200
    assert (unknown.json["customer_id"], unknown.json["features"]) == (None, [])
    assert_problem(
        api.get("billing/entitlements", key=acme.key,
                query={"customer_id": "6f1c9a52-0000-4000-8000-000000000000"}),
        404, "customer_not_found",
    )


@pytest.mark.parametrize(("current", "new", "merged"), [
    (5, 20, 20), (20, 5, 20), (1.5, 1, 1.5), (False, True, True), (True, False, True),
    (["a"], ["b", "a"], ["a", "b"]), ("eu", "us", "us"), ({"x": 1}, {"y": 2}, {"y": 2}),
    (5, "many", "many"), (True, 3, 3),
])
def test_values_combine_by_kind(current: Any, new: Any, merged: Any) -> None:
    assert merge_values(current, new) == merged


def test_a_key_and_a_feature_spelled_alike_count_once(
    api: Api, acme: TenantFixture, catalog: Catalog
) -> None:
    made = api.post("billing/products", json={"key": "api_calls", "name": "API calls",
                                              "product_type": "quantity",
                                              "features": ["api_calls"]}, key=acme.key)
    assert made.status == 201, made.body
    _plan(api, acme, "calls", {"type": "allowance", "product": "api_calls", "amount": 100})
    _subscribe(api, acme, "alike", "calls")
    body = api.get("billing/entitlements", key=acme.key, query={"external_id": "alike"}).json
    (item,) = body["features"]
    assert (item["feature"], item["remaining"], item["allowance"]) == ("API_CALLS", 100, 100)
