"""Credit costs: one pool of credits, each feature costing a number of credits per unit."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.db import connection

from billable import clock
from billable.models import LedgerEntry, QuotaBatch, Usage
from tests.support.api import Api, assert_problem
from tests.support.tenants import TenantFixture

COSTS = {"small_model": 1, "large_model": 10, "image": 25}


@pytest.fixture
def credits(api: Api, acme: TenantFixture, in_acme: TenantFixture) -> dict[str, Any]:
    response = api.post("billing/products", json={
        "key": "credits", "name": "AI credits", "product_type": "quantity",
        "features": ["small_model", "large_model", "image"], "credit_costs": COSTS,
    }, key=acme.key)
    assert response.status == 201, response.body
    return response.json  # type: ignore[no-any-return]


def _add(api: Api, key: str, product: str, amount: int, days: int | None = None,
         who: str = "bot-user") -> str:
    """A batch of `amount` units of `product` for `who`, expiring in `days` (never: None)."""
    body: dict[str, Any] = {"external_id": who, "product": product, "amount": amount,
                            "reason": "test"}
    if days is not None:
        body["expires_at"] = (clock.now() + timedelta(days=days)).isoformat()
    response = api.post("billing/adjustments", json=body, key=key)
    assert response.status == 201, response.body
    return response.json["batches"][0]["id"]  # type: ignore[no-any-return]


def _consume(api: Api, key: str, feature: str, amount: int, **extra: Any) -> Any:
    return api.post("billing/quota/consume", json={
        "external_id": "bot-user", "feature": feature, "amount": amount, **extra}, key=key)


def _balance(api: Api, key: str, feature: str) -> dict[str, Any]:
    response = api.get("billing/balance", key=key,
                       query={"external_id": "bot-user", "feature": feature})
    assert response.status == 200, response.body
    return response.json  # type: ignore[no-any-return]


def _db(acme: TenantFixture) -> None:
    """Read the tenant's rows directly (a request leaves the connection on the public schema)."""
    connection.set_schema(acme.tenant.schema_name)


def _remaining(acme: TenantFixture, batch_id: str) -> int:
    _db(acme)
    return QuotaBatch.objects.get(pk=batch_id).remaining


def test_a_product_shows_its_costs(api: Api, acme: TenantFixture,
                                   credits: dict[str, Any]) -> None:
    assert credits["credit_costs"] == COSTS
    listed = api.get("billing/products/credits", key=acme.key).json
    assert listed["credit_costs"] == COSTS


def test_consume_spends_credits_at_the_feature_cost_and_answers_both(
    api: Api, acme: TenantFixture, credits: dict[str, Any]
) -> None:
    batch = _add(api, acme.key, "credits", 100)
    response = _consume(api, acme.key, "large_model", 2, metadata={"model": "big-1"})
    assert response.status == 200, response.body
    body = response.json
    assert (body["amount"], body["credits"], body["remaining"], body["remaining_credits"]) == (
        2, 20, 8, 80)
    assert _remaining(acme, batch) == 80
    _db(acme)
    entry = LedgerEntry.objects.get(usage_id=body["usage_id"])
    assert (entry.amount, entry.metadata["unit_cost"], entry.metadata["feature"]) == (
        20, 10, "large_model")
    _db(acme)
    assert Usage.objects.get(pk=body["usage_id"]).credits == 20
    # the same pool, read as images: 80 // 25
    image = _balance(api, acme.key, "image")
    assert (image["remaining"], image["can_use"]) == (3, True)
    assert image["credit_pools"] == [{"product": "CREDITS", "unit_cost": 25, "credits": 80}]
    # a feature at cost 1 is a plain consume, and the product's own key spends credits as such
    assert _consume(api, acme.key, "small_model", 5).json["credits"] == 5
    direct = _consume(api, acme.key, "credits", 5).json
    assert (direct["credits"], direct["remaining"], direct["remaining_credits"]) == (5, 70, None)


def test_too_few_credits_is_a_402_in_units_and_writes_nothing(
    api: Api, acme: TenantFixture, credits: dict[str, Any]
) -> None:
    batch = _add(api, acme.key, "credits", 80)
    response = _consume(api, acme.key, "image", 4)
    assert_problem(response, 402, "insufficient_quota")
    assert (response.json["remaining"], response.json["remaining_credits"]) == (3, 80)
    assert _remaining(acme, batch) == 80
    _db(acme)
    assert not Usage.objects.exists()
    # credits left, but fewer than one image costs: nothing usable, and the answer says why
    assert _consume(api, acme.key, "large_model", 6).status == 200
    short = _consume(api, acme.key, "image", 1)
    assert_problem(short, 402, "quota_exhausted")
    assert (short.json["remaining"], short.json["remaining_credits"]) == (0, 20)
    assert "20 credits are left" in short.json["detail"]
    hold = api.post("billing/holds", json={"external_id": "bot-user", "feature": "image",
                                           "amount": 1}, key=acme.key)
    assert_problem(hold, 402, "quota_exhausted")
    assert hold.json["remaining_credits"] == 20
    # a feature no product prices answers as before, without remaining_credits
    plain = _consume(api, acme.key, "video", 1)
    assert_problem(plain, 402, "quota_exhausted")
    assert "remaining_credits" not in plain.json


def test_a_cost_change_applies_to_later_consumes_only(
    api: Api, acme: TenantFixture, credits: dict[str, Any]
) -> None:
    _add(api, acme.key, "credits", 100)
    first = _consume(api, acme.key, "large_model", 2).json
    patched = api.patch("billing/products/credits",
                        json={"credit_costs": {**COSTS, "large_model": 20}}, key=acme.key)
    assert patched.status == 200, patched.body
    assert patched.json["credit_costs"]["large_model"] == 20
    second = _consume(api, acme.key, "large_model", 1).json
    assert (second["credits"], second["remaining"]) == (20, 3)  # 60 credits left, 20 each
    _db(acme)
    assert Usage.objects.get(pk=first["usage_id"]).credits == 20
    _db(acme)
    costs = sorted(e.metadata["unit_cost"] for e in LedgerEntry.objects.filter(
        direction="debit", usage__isnull=False))
    assert costs == [10, 20]
    # removing a feature removes its cost with it
    narrowed = api.patch("billing/products/credits",
                         json={"features": ["small_model", "image"]}, key=acme.key).json
    assert narrowed["credit_costs"] == {"small_model": 1, "image": 25}


def test_credits_of_one_product_pool_across_its_batches(
    api: Api, acme: TenantFixture, credits: dict[str, Any]
) -> None:
    soon = _add(api, acme.key, "credits", 5, days=1)
    later = _add(api, acme.key, "credits", 7, days=5)
    assert _balance(api, acme.key, "large_model")["remaining"] == 1  # 12 credits, 10 each
    body = _consume(api, acme.key, "large_model", 1).json
    assert body["credits"] == 10
    assert (_remaining(acme, soon), _remaining(acme, later)) == (0, 2)


def test_a_unit_is_never_split_between_two_products(
    api: Api, acme: TenantFixture, credits: dict[str, Any]
) -> None:
    # an allowance of large-model calls beside the credit pool, expiring between its batches
    calls = api.post("billing/products", json={
        "key": "large_calls", "name": "Large calls", "product_type": "quantity",
        "features": ["large_model"]}, key=acme.key)
    assert calls.status == 201, calls.body
    first = _add(api, acme.key, "credits", 5, days=1)
    call = _add(api, acme.key, "large_calls", 1, days=2)
    rest = _add(api, acme.key, "credits", 50)
    balance = _balance(api, acme.key, "large_model")
    assert balance["remaining"] == 1 + 5  # 55 credits give 5 whole units
    assert balance["credit_pools"] == [{"product": "CREDITS", "unit_cost": 10, "credits": 55}]
    body = _consume(api, acme.key, "large_model", 1).json
    # the 5 credits drawn toward a unit the call then paid went back
    assert body["credits"] == 1
    assert (_remaining(acme, first), _remaining(acme, call), _remaining(acme, rest)) == (5, 0, 50)
    _db(acme)
    assert not LedgerEntry.objects.filter(batch_id=first).exists() or (
        sum(e.amount for e in LedgerEntry.objects.filter(batch_id=first, direction="debit")) == 0
    )
    body = _consume(api, acme.key, "large_model", 2).json
    assert body["credits"] == 20
    assert (_remaining(acme, first), _remaining(acme, rest)) == (0, 35)
    assert body["remaining"] == 3


def test_holds_reserve_credits_and_return_whole_units(
    api: Api, acme: TenantFixture, credits: dict[str, Any]
) -> None:
    batch = _add(api, acme.key, "credits", 100)
    hold = api.post("billing/holds", json={"external_id": "bot-user", "feature": "large_model",
                                           "amount": 3}, key=acme.key)
    assert hold.status == 201, hold.body
    assert (hold.json["amount"], hold.json["credits"]) == (3, 30)
    assert _remaining(acme, batch) == 70
    assert _balance(api, acme.key, "large_model")["remaining"] == 7
    committed = api.post(f"billing/holds/{hold.json['id']}/commit", json={"amount": 1},
                         key=acme.key)
    assert committed.status == 200, committed.body
    assert (committed.json["committed_amount"], committed.json["credits"]) == (1, 10)
    assert _remaining(acme, batch) == 90
    _db(acme)
    usage = Usage.objects.get(action_id=hold.json["id"])
    assert (usage.amount, usage.credits) == (1, 10)
    listed = api.get("billing/usages", key=acme.key,
                     query={"external_id": "bot-user"}).json["items"]
    assert [(u["feature"], u["amount"], u["credits"], u["action_type"]) for u in listed] == [
        ("large_model", 1, 10, "hold")]


def test_usages_list_newest_first_with_metadata_and_filters(
    api: Api, acme: TenantFixture, credits: dict[str, Any]
) -> None:
    _add(api, acme.key, "credits", 100)
    for feature, meta in (("small_model", {"n": 1}), ("image", {"n": 2}),
                          ("small_model", {"n": 3})):
        assert _consume(api, acme.key, feature, 1, metadata=meta).status == 200
    page = api.get("billing/usages", key=acme.key,
                   query={"external_id": "bot-user", "limit": 2}).json
    assert [u["metadata"]["n"] for u in page["items"]] == [3, 2]
    rest = api.get("billing/usages", key=acme.key, query={
        "external_id": "bot-user", "limit": 2, "cursor": page["next_cursor"]}).json
    assert [u["metadata"]["n"] for u in rest["items"]] == [1] and rest["next_cursor"] is None
    images = api.get("billing/usages", key=acme.key,
                     query={"external_id": "bot-user", "feature": "IMAGE"}).json["items"]
    assert [(u["amount"], u["credits"]) for u in images] == [(1, 25)]
    unknown = api.get("billing/usages", key=acme.key, query={"external_id": "nobody"})
    assert_problem(unknown, 404, "customer_not_found")


@pytest.mark.parametrize(("body", "field"), [
    ({"product_type": "quantity", "features": ["a"], "credit_costs": {"b": 2}}, "credit_costs"),
    ({"product_type": "quantity", "features": ["a"], "credit_costs": {"a": 0}}, "credit_costs"),
    ({"product_type": "period", "features": ["a"], "credit_costs": {"a": 2}}, "credit_costs"),
    ({"product_type": "quantity", "features": ["a"], "credit_costs": {"A": 2, "a": 3}},
     "credit_costs"),
    ({"product_type": "quantity", "features": ["p1", "a"], "credit_costs": {"p1": 2}},
     "credit_costs"),
])
def test_bad_costs_are_refused(api: Api, acme: TenantFixture, body: dict[str, Any],
                               field: str) -> None:
    response = api.post("billing/products", json={"key": "p1", "name": "P", **body},
                        key=acme.key)
    assert_problem(response, 422, "validation_error")
    assert field in str(response.json)
    assert api.get("billing/products/p1", key=acme.key).status == 404


def test_a_product_that_stops_being_a_quantity_product_prices_nothing(
    api: Api, acme: TenantFixture, credits: dict[str, Any]
) -> None:
    changed = api.patch("billing/products/credits", json={
        "product_type": "period", "metadata": {"note": "now a pass"}}, key=acme.key)
    assert changed.status == 200, changed.body
    assert (changed.json["product_type"], changed.json["credit_costs"]) == ("period", {})


def test_huge_amounts_at_huge_costs_do_not_overflow(
    api: Api, acme: TenantFixture, in_acme: TenantFixture
) -> None:
    for key, costs in (("dear", {"work": 1_000_000_000}), ("plain", {})):
        made = api.post("billing/products", json={
            "key": key, "name": key, "product_type": "quantity", "features": ["work"],
            "credit_costs": costs}, key=acme.key)
        assert made.status == 201, made.body
    dear = _add(api, acme.key, "dear", 5, days=1)
    plain = _add(api, acme.key, "plain", 10_000_000_000)
    body = _consume(api, acme.key, "work", 10_000_000_000).json
    assert (body["credits"], body["remaining"]) == (10_000_000_000, 0)
    assert (_remaining(acme, dear), _remaining(acme, plain)) == (5, 0)


def test_a_released_hold_keeps_no_credits(
    api: Api, acme: TenantFixture, credits: dict[str, Any]
) -> None:
    batch = _add(api, acme.key, "credits", 100)
    hold = api.post("billing/holds", json={"external_id": "bot-user", "feature": "image",
                                           "amount": 2}, key=acme.key).json
    assert hold["credits"] == 50
    released = api.post(f"billing/holds/{hold['id']}/release", json={}, key=acme.key).json
    assert (released["status"], released["credits"]) == ("released", 0)
    assert _remaining(acme, batch) == 100
