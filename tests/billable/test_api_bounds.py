"""Bounds of periods, quantities and prices: out-of-range input is a 422 naming the field where it
is accepted, and no later grant, trial, confirm or exchange can overflow into a 500."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from django.db import connection
from django.utils import timezone

from billable.currencies import MAX_ORDER_TOTAL, MAX_PRICE
from billable.models import (
    CatalogKey,
    Grant,
    LedgerEntry,
    Offer,
    Order,
    OrderItem,
    Product,
    QuotaBatch,
    TrialHistory,
)
from billable.periods import LATEST_EXPIRY
from billable.services.catalog import ItemSpec, offer_create, product_create
from tests.support.api import Api, assert_problem
from tests.support.tenants import TenantFixture

Catalog = dict[str, Product | Offer]


def _offer(sku: str, *, price: Any = "5", currency: str = "USD", **item: Any) -> dict[str, Any]:
    line = {"product": "reports", "quantity": 1, "period_unit": "days", "period_value": 7, **item}
    return {"sku": sku, "name": sku, "price": price, "currency": currency, "items": [line]}


def _counts(acme: TenantFixture) -> tuple[int, ...]:
    connection.set_schema(acme.tenant.schema_name)
    return tuple(
        model.objects.count()
        for model in (Offer, CatalogKey, Order, OrderItem, Grant, QuotaBatch, LedgerEntry,
                      TrialHistory)
    )


def _loc(problem: dict[str, Any]) -> list[Any]:
    return problem["errors"][0]["loc"]  # type: ignore[no-any-return]


# --- Periods and quantities, where offers and orders accept them


@pytest.mark.parametrize(
    ("item", "field"),
    [
        ({"period_unit": "years", "period_value": 100_000}, "period_value"),
        ({"period_unit": "years", "period_value": 101}, "period_value"),
        ({"period_unit": "months", "period_value": 1_201}, "period_value"),
        ({"period_unit": "days", "period_value": 36_526}, "period_value"),
        # a period product's item extends access by quantity × period
        ({"product": "pro", "quantity": 10**12, "period_unit": "hours", "period_value": 1},
         "quantity"),
        ({"product": "pro", "quantity": 101, "period_unit": "years", "period_value": 1},
         "quantity"),
    ],
)
def test_offer_periods_over_a_century_are_422(
    api: Api, acme: TenantFixture, catalog: Catalog, item: dict[str, Any], field: str
) -> None:
    before = _counts(acme)
    for response in (
        api.post("billing/offers", json=_offer("long", **item), key=acme.key),
        api.patch("billing/offers/reports_10", json={"items": _offer("x", **item)["items"]},
                  key=acme.key),
    ):
        problem = assert_problem(response, 422, "validation_error")
        assert _loc(problem) == ["body", "items", 0, field]
    assert _counts(acme) == before
    assert Offer.objects.get(sku="REPORTS_10").items.get().period_value == 30


def test_offer_periods_of_a_century_are_granted(
    api: Api, acme: TenantFixture, catalog: Catalog
) -> None:
    for sku, item in (
        ("century_years", {"product": "pro", "period_unit": "years", "period_value": 100}),
        ("century_hours", {"product": "pro", "quantity": 10, "period_unit": "hours",
                           "period_value": 87_660}),
        ("century_reports", {"period_unit": "months", "period_value": 1_200}),
    ):
        created = api.post("billing/offers", json=_offer(sku, **item), key=acme.key)
        assert created.status == 201, created.body
        granted = api.post("billing/grants", json={"external_id": sku, "sku": sku,
                                                   "kind": "bonus"}, key=acme.key)
        assert granted.status == 201, granted.body
        assert granted.json["batches"][0]["expires_at"] >= "2100"


def test_order_over_a_century_of_access_is_422(
    api: Api, acme: TenantFixture, catalog: Catalog
) -> None:
    before = _counts(acme)
    response = api.post(
        "billing/orders",
        json={"external_id": "o", "items": [{"sku": "reports_10", "quantity": 1_000_000},
                                            {"sku": "pro_month", "quantity": 1_000_000}]},
        key=acme.key,
    )
    problem = assert_problem(response, 422, "validation_error")
    assert _loc(problem) == ["body", "items", 1, "quantity"]
    assert _counts(acme) == before
    # a century of months is one order line at most, and it is granted
    order = api.post("billing/orders", json={"external_id": "o", "items": [
        {"sku": "pro_month", "quantity": 1_200}]}, key=acme.key)
    assert order.status == 201, order.body
    confirmed = api.post(f"billing/orders/{order.json['id']}/confirm", key=acme.key)
    assert confirmed.status == 200, confirmed.body
    balance = api.get("billing/balance", key=acme.key,
                      query={"external_id": "o", "feature": "pro"}).json
    assert balance["expires_at"][:4] == str(timezone.now().year + 100)


# --- The horizon: contiguous renewals cannot push an expiry past LATEST_EXPIRY


@pytest.fixture
def near_horizon(api: Api, acme: TenantFixture, catalog: Catalog) -> dict[str, Any]:
    """A customer with access to PRO until 9990, a pending century order and currency offer."""
    granted = api.post("billing/grants", json={
        "external_id": "late", "sku": "pro_month", "kind": "manual",
        "expires_at": "9990-01-01T00:00:00Z"}, key=acme.key)
    assert granted.status == 201, granted.body
    order = api.post("billing/orders", json={"external_id": "late", "items": [
        {"sku": "pro_month", "quantity": 1_200}]}, key=acme.key)
    assert order.status == 201, order.body
    connection.set_schema(acme.tenant.schema_name)
    product_create(key="gems", name="Gems", product_type="quantity", is_currency=True)
    offer_create(sku="gems_100", name="Gems", price=Decimal("1"), currency="USD",
                 items=[ItemSpec("GEMS", 100)])
    offer_create(sku="pro_century_for_gems", name="Pro for gems", price=Decimal("10"),
                 currency="GEMS", items=[ItemSpec("PRO", 1, "years", 100)])
    gems = api.post("billing/grants", json={"external_id": "late", "sku": "gems_100",
                                            "kind": "bonus"}, key=acme.key)
    assert gems.status == 201, gems.body
    return {"order": order.json}


def test_renewals_past_the_horizon_are_422_and_change_nothing(
    api: Api, acme: TenantFixture, near_horizon: dict[str, Any],
    sent: dict[str, list[dict[str, Any]]],
) -> None:
    # given
    order_id = near_horizon["order"]["id"]
    before = _counts(acme)
    signals_before = {name: len(calls) for name, calls in sent.items()}
    # when: a confirm, a bonus, a trial and an exchange would each extend access past 9999
    answers = [
        api.post(f"billing/orders/{order_id}/confirm", key=acme.key,
                 headers={"Idempotency-Key": "late-confirm"}),
        api.post("billing/exchange", json={"external_id": "late", "sku": "pro_century_for_gems"},
                 key=acme.key),
    ]
    century = api.post("billing/offers", json=_offer(
        "pro_century", product="pro", period_unit="years", period_value=100), key=acme.key)
    assert century.status == 201, century.body
    answers += [
        api.post("billing/grants", json={"external_id": "late", "sku": "pro_century",
                                         "kind": kind}, key=acme.key)
        for kind in ("bonus", "trial")
    ]
    # then
    for response in answers:
        problem = assert_problem(response, 422, "expiry_out_of_range")
        assert "9999-01-01" in problem["detail"]
    assert _counts(acme)[2:] == before[2:]
    assert Order.objects.get(pk=order_id).status == "pending"
    balance = api.get("billing/balance", key=acme.key,
                      query={"external_id": "late", "feature": "gems"}).json
    assert balance["remaining"] == 100
    # (the exchange sends order_created and its debit's signal before granting: inside the
    # transaction that rolls back, as every receiver that writes does)
    for name in ("order_confirmed", "grant_created", "trial_activated", "referral_rewarded"):
        assert len(sent[name]) == signals_before[name], name
    # the same key again runs again (a 422 is not kept), and still refuses
    again = api.post(f"billing/orders/{order_id}/confirm", key=acme.key,
                     headers={"Idempotency-Key": "late-confirm"})
    assert_problem(again, 422, "expiry_out_of_range")


@pytest.mark.parametrize("path", ["billing/grants", "billing/adjustments"])
def test_explicit_expiry_past_the_horizon_is_422(
    api: Api, acme: TenantFixture, catalog: Catalog, path: str
) -> None:
    before = _counts(acme)
    body = {"external_id": "x", "sku": "reports_10", "kind": "bonus", "product": "reports",
            "amount": 5, "reason": "r"}
    for expires_at in ("9999-12-31T23:59:59Z", "9999-01-01T00:00:01Z"):
        response = api.post(path, json={**body, "expires_at": expires_at}, key=acme.key)
        problem = assert_problem(response, 422, "validation_error")
        assert _loc(problem) == ["body", "expires_at"]
    assert _counts(acme)[4:] == before[4:]
    edge = api.post(path, json={**body, "expires_at": LATEST_EXPIRY.isoformat()}, key=acme.key)
    assert edge.status == 201, edge.body


# --- Prices and totals fit their columns


@pytest.mark.parametrize(
    ("price", "currency"),
    [(1e300, "USD"), (1e300, "gems"), (10**30, "USD"), (1e16, "JPY"), (-1, "USD"),
     ("9999999999999999", "USD"), (float(MAX_PRICE) * 2, "EUR")],
)
def test_prices_out_of_range_are_422(
    api: Api, acme: TenantFixture, catalog: Catalog, price: Any, currency: str
) -> None:
    connection.set_schema(acme.tenant.schema_name)
    if not Product.objects.filter(key="GEMS").exists():
        product_create(key="gems", name="Gems", product_type="quantity", is_currency=True)
    before = _counts(acme)
    created = api.post("billing/offers", json=_offer("dear", price=price, currency=currency),
                       key=acme.key)
    updated = api.patch("billing/offers/reports_10", json={"price": price, "currency": currency},
                        key=acme.key)
    for response in (created, updated):
        problem = assert_problem(response, 422, "validation_error")
        assert "price" in _loc(problem)
    assert _counts(acme) == before
    assert Offer.objects.get(sku="REPORTS_10").price == Decimal("9.00")


def test_the_highest_price_is_stored_and_a_total_past_its_column_is_422(
    api: Api, acme: TenantFixture, catalog: Catalog
) -> None:
    highest = str(MAX_PRICE.quantize(Decimal("0.01"), rounding="ROUND_DOWN"))
    created = api.post("billing/offers", json=_offer("dearest", price=highest), key=acme.key)
    assert created.status == 201, created.body
    assert created.json["price"] == "999999999999999.99"
    before = _counts(acme)
    response = api.post("billing/orders", json={"external_id": "rich", "items": [
        {"sku": "dearest", "quantity": 1_000_000}]}, key=acme.key)
    problem = assert_problem(response, 422, "validation_error")
    assert _loc(problem) == ["body", "items"]
    assert _counts(acme) == before
    ok = api.post("billing/orders", json={"external_id": "rich", "items": [
        {"sku": "dearest", "quantity": 100}]}, key=acme.key)
    assert ok.status == 201, ok.body


def test_bounds_fit_the_columns() -> None:
    price = Offer._meta.get_field("price")
    total = Order._meta.get_field("total")
    unit_price = OrderItem._meta.get_field("unit_price")
    for field, bound in ((price, MAX_PRICE), (unit_price, MAX_PRICE), (total, MAX_ORDER_TOTAL)):
        digits = field.max_digits - field.decimal_places  # type: ignore[attr-defined]
        assert bound < Decimal(10) ** digits
        assert -bound.as_tuple().exponent <= field.decimal_places  # type: ignore[attr-defined,operator]
