"""Orders and exchange through the API: prices, snapshots, state machine, grants, refunds."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.db.models import Sum
from django.utils import timezone
from django_tenants.utils import schema_context

from billable import signals
from billable.models import LedgerEntry, Order, QuotaBatch, Usage
from billable.selectors import CustomerRef
from billable.services.catalog import ItemSpec, offer_create, product_create, product_update
from billable.services.customers import customer_ensure
from billable.services.grants import offer_grant
from tests.support.api import Api, assert_problem
from tests.support.signals import connected
from tests.support.tenants import TenantFixture

Catalog = dict[str, Any]


def create(api: Api, key: str, external_id: str, *lines: dict[str, Any]) -> dict[str, Any]:
    response = api.post("billing/orders", json={"external_id": external_id, "items": list(lines)},
                        key=key)
    assert response.status == 201, response.body
    return response.json  # type: ignore[no-any-return]


def remaining(api: Api, key: str, external_id: str, feature: str = "reports") -> Any:
    response = api.get("billing/balance", key=key,
                       query={"external_id": external_id, "feature": feature})
    assert response.status == 200, response.body
    return response.json["remaining"]


# --- Create


def test_create_uses_offer_prices_and_exact_total(api: Api, acme: TenantFixture,
                                                  catalog: Catalog) -> None:
    order = create(api, acme.key, "c1",
                   {"sku": "reports_10", "quantity": 2, "price": "0.01", "unit_price": "0"},
                   {"sku": "pro_month", "quantity": 1, "unit_price": "1"})
    assert order["total"] == "37.00"
    assert order["currency"] == "USD"
    assert order["status"] == "pending" and order["paid_at"] is None
    prices = {item["sku"]: item["unit_price"] for item in order["items"]}
    assert prices == {"REPORTS_10": "9.00", "PRO_MONTH": "19.00"}
    fetched = api.get(f"billing/orders/{order['id']}", key=acme.key).json
    assert fetched["total"] == "37.00"


def test_create_total_is_exact(api: Api, acme: TenantFixture, catalog: Catalog) -> None:
    order = create(api, acme.key, "c1", {"sku": "reports_10", "quantity": 2})
    assert order["total"] == "18.00"


def test_mixed_currencies_422(api: Api, acme: TenantFixture, catalog: Catalog) -> None:
    with schema_context(acme.tenant.schema_name):
        offer_create(sku="reports_eur", name="EUR", price=Decimal("8"), currency="EUR",
                     items=[ItemSpec("REPORTS", 10)])
    response = api.post("billing/orders", key=acme.key, json={
        "external_id": "c1", "items": [{"sku": "reports_10"}, {"sku": "reports_eur"}]})
    assert_problem(response, 422, "mixed_currencies")
    with schema_context(acme.tenant.schema_name):
        assert Order.objects.count() == 0


def test_unknown_and_inactive_skus_422(api: Api, acme: TenantFixture, catalog: Catalog) -> None:
    body = {"external_id": "c1", "items": [{"sku": "nope"}]}
    assert_problem(api.post("billing/orders", json=body, key=acme.key), 422, "unknown_sku")
    assert api.patch("billing/offers/reports_5_forever", json={"is_active": False},
                     key=acme.key).status == 200
    body = {"external_id": "c1", "items": [{"sku": "reports_5_forever"}]}
    assert_problem(api.post("billing/orders", json=body, key=acme.key), 422, "inactive_offer")
    with schema_context(acme.tenant.schema_name):
        product_update(product=catalog["UNL"], is_active=False)
    body = {"external_id": "c1", "items": [{"sku": "unl_forever"}]}
    assert_problem(api.post("billing/orders", json=body, key=acme.key), 422, "inactive_product")
    with schema_context(acme.tenant.schema_name):
        assert Order.objects.count() == 0


@pytest.mark.parametrize("items", [[{"sku": "reports_10", "quantity": 0}],
                                   [{"sku": "reports_10", "quantity": -1}], []])
def test_quantity_at_least_one_and_items_required(api: Api, acme: TenantFixture,
                                                  catalog: Catalog, items: Any) -> None:
    response = api.post("billing/orders", json={"external_id": "c1", "items": items},
                        key=acme.key)
    assert_problem(response, 422, "validation_error")


def test_snapshot_kept_after_offer_changes(api: Api, acme: TenantFixture,
                                           catalog: Catalog) -> None:
    order = create(api, acme.key, "snap", {"sku": "reports_10", "quantity": 1})
    changed = api.patch("billing/offers/reports_10", key=acme.key, json={
        "price": "50.00", "name": "Renamed",
        "items": [{"product": "REPORTS", "quantity": 100}]})
    assert changed.status == 200, changed.body
    confirmed = api.post(f"billing/orders/{order['id']}/confirm", json={}, key=acme.key)
    assert confirmed.status == 200, confirmed.body
    assert confirmed.json["total"] == "9.00"
    assert confirmed.json["items"][0]["unit_price"] == "9.00"
    assert confirmed.json["items"][0]["name"] == "10 reports"
    assert remaining(api, acme.key, "snap") == 10
    new = create(api, acme.key, "snap2", {"sku": "reports_10"})
    assert new["total"] == "50.00"


# --- List and get


def test_list_filters_and_cursor(api: Api, acme: TenantFixture, catalog: Catalog) -> None:
    ids = [create(api, acme.key, "lister", {"sku": "reports_10"})["id"] for _ in range(3)]
    other = create(api, acme.key, "other", {"sku": "reports_10"})["id"]
    api.post(f"billing/orders/{ids[0]}/confirm", json={"payment_id": "p-list"}, key=acme.key)
    api.post(f"billing/orders/{ids[1]}/cancel", key=acme.key)

    mine = api.get("billing/orders", key=acme.key, query={"external_id": "lister"}).json
    assert {o["id"] for o in mine["items"]} == set(ids)
    paid = api.get("billing/orders", key=acme.key,
                   query={"external_id": "lister", "status": "paid"}).json
    assert [o["id"] for o in paid["items"]] == [ids[0]]
    cancelled = api.get("billing/orders", key=acme.key, query={"status": "cancelled"}).json
    assert [o["id"] for o in cancelled["items"]] == [ids[1]]
    pending = api.get("billing/orders", key=acme.key, query={"status": "pending"}).json
    assert {o["id"] for o in pending["items"]} == {ids[2], other}

    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        query: dict[str, Any] = {"limit": 3}
        if cursor:
            query["cursor"] = cursor
        page = api.get("billing/orders", key=acme.key, query=query).json
        pages += 1
        seen.extend(o["id"] for o in page["items"])
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert pages == 2
    assert len(seen) == len(set(seen)) == 4
    assert set(seen) == {*ids, other}


def test_get_other_tenant_and_malformed_404(api: Api, acme: TenantFixture, globex: TenantFixture,
                                            catalog: Catalog) -> None:
    order = create(api, acme.key, "c1", {"sku": "reports_10"})
    assert api.get(f"billing/orders/{order['id']}", key=acme.key).status == 200
    assert_problem(api.get(f"billing/orders/{order['id']}", key=globex.key), 404,
                   "order_not_found")
    assert_problem(api.post(f"billing/orders/{order['id']}/confirm", json={}, key=globex.key),
                   404, "order_not_found")
    for bad in ("not-a-uuid", "123", "00000000-0000-0000-0000-000000000000"):
        assert_problem(api.get(f"billing/orders/{bad}", key=acme.key), 404, "order_not_found")


# --- Confirm


def test_confirm_grants_quantity_times_item_quantity(api: Api, acme: TenantFixture,
                                                     catalog: Catalog) -> None:
    order = create(api, acme.key, "q", {"sku": "reports_10", "quantity": 3},
                   {"sku": "reports_5_forever", "quantity": 2})
    assert remaining(api, acme.key, "q") == 0
    confirmed = api.post(f"billing/orders/{order['id']}/confirm",
                         json={"payment_id": "pq", "payment_method": "card"}, key=acme.key)
    assert confirmed.status == 200, confirmed.body
    assert confirmed.json["payment_id"] == "pq" and confirmed.json["payment_method"] == "card"
    assert remaining(api, acme.key, "q") == 40
    with schema_context(acme.tenant.schema_name):
        batches = QuotaBatch.objects.filter(order_item__order_id=order["id"])
        assert sorted(b.initial for b in batches) == [10, 30]
        credits = LedgerEntry.objects.filter(batch__in=batches, direction="credit")
        assert credits.aggregate(s=Sum("amount"))["s"] == 40


def test_confirm_period_extends_by_quantity_times_period(api: Api, acme: TenantFixture,
                                                         catalog: Catalog) -> None:
    order = create(api, acme.key, "per", {"sku": "pro_month", "quantity": 3})
    before = timezone.now()
    assert api.post(f"billing/orders/{order['id']}/confirm", json={},
                    key=acme.key).status == 200
    balance = api.get("billing/balance", key=acme.key,
                      query={"external_id": "per", "feature": "priority_support"}).json
    assert balance["can_use"] is True
    with schema_context(acme.tenant.schema_name):
        ends = [b.expires_at for b in QuotaBatch.objects.filter(order_item__order_id=order["id"])]
    end = max(e for e in ends if e is not None)
    assert before + timedelta(days=88) <= end <= before + timedelta(days=93), end


def test_confirm_replays_and_conflicts(api: Api, acme: TenantFixture, catalog: Catalog) -> None:
    order = create(api, acme.key, "rp", {"sku": "reports_10"})
    first = api.post(f"billing/orders/{order['id']}/confirm", json={"payment_id": "p-r"},
                     key=acme.key)
    assert first.status == 200
    for body in ({"payment_id": "p-r"}, {}):
        again = api.post(f"billing/orders/{order['id']}/confirm", json=body, key=acme.key)
        assert again.status == 200, again.body
        assert again.json["paid_at"] == first.json["paid_at"]
        assert again.json["payment_id"] == "p-r"
    assert remaining(api, acme.key, "rp") == 10
    assert_problem(api.post(f"billing/orders/{order['id']}/confirm",
                            json={"payment_id": "p-other"}, key=acme.key),
                   409, "order_already_paid")
    second = create(api, acme.key, "rp", {"sku": "reports_10"})
    assert_problem(api.post(f"billing/orders/{second['id']}/confirm",
                            json={"payment_id": "p-r"}, key=acme.key),
                   409, "payment_id_conflict")
    assert api.get(f"billing/orders/{second['id']}", key=acme.key).json["status"] == "pending"
    assert remaining(api, acme.key, "rp") == 10
    with schema_context(acme.tenant.schema_name):
        credits = LedgerEntry.objects.filter(
            direction="credit", batch__customer__identities__external_id="rp"
        )
        assert credits.count() == 1


def test_cancel_pending_and_never_confirm_after(api: Api, acme: TenantFixture,
                                                catalog: Catalog) -> None:
    order = create(api, acme.key, "cx", {"sku": "reports_10"})
    cancelled = api.post(f"billing/orders/{order['id']}/cancel", json={"reason": "changed mind"},
                         key=acme.key)
    assert cancelled.status == 200 and cancelled.json["status"] == "cancelled"
    assert_problem(api.post(f"billing/orders/{order['id']}/cancel", key=acme.key),
                   409, "invalid_order_state")
    for body in ({}, {"payment_id": "p-cx"}):
        assert_problem(api.post(f"billing/orders/{order['id']}/confirm", json=body,
                                key=acme.key), 409, "invalid_order_state")
    assert_problem(api.post(f"billing/orders/{order['id']}/refund", key=acme.key),
                   409, "invalid_order_state")
    assert remaining(api, acme.key, "cx") == 0


def test_refund_pending_is_409(api: Api, acme: TenantFixture, catalog: Catalog) -> None:
    order = create(api, acme.key, "rf0", {"sku": "reports_10"})
    assert_problem(api.post(f"billing/orders/{order['id']}/refund", key=acme.key),
                   409, "invalid_order_state")


def test_refund_revokes_remaining_keeps_consumed(api: Api, acme: TenantFixture,
                                                 catalog: Catalog) -> None:
    order = create(api, acme.key, "rf", {"sku": "reports_10", "quantity": 2})
    api.post(f"billing/orders/{order['id']}/confirm", json={"payment_id": "p-rf"}, key=acme.key)
    consumed = api.post("billing/quota/consume", key=acme.key,
                        json={"external_id": "rf", "feature": "reports", "amount": 7})
    assert consumed.status == 200, consumed.body
    refunded = api.post(f"billing/orders/{order['id']}/refund", json={"reason": "chargeback"},
                        key=acme.key)
    assert refunded.status == 200 and refunded.json["status"] == "refunded"
    assert remaining(api, acme.key, "rf") == 0
    with schema_context(acme.tenant.schema_name):
        batches = QuotaBatch.objects.filter(order_item__order_id=order["id"])
        assert {b.state for b in batches} == {"revoked"}
        refunds = LedgerEntry.objects.filter(batch__in=batches, direction="debit",
                                             action_type="refund")
        assert refunds.aggregate(s=Sum("amount"))["s"] == 13
        assert all(e.action_id == order["id"] for e in refunds)
        usage_debits = LedgerEntry.objects.filter(batch__in=batches, direction="debit",
                                                  action_type="usage")
        assert usage_debits.aggregate(s=Sum("amount"))["s"] == 7
        assert Usage.objects.filter(customer__identities__external_id="rf").count() == 1
        assert sum(b.remaining for b in batches) == 0
    assert_problem(api.post(f"billing/orders/{order['id']}/refund", key=acme.key),
                   409, "invalid_order_state")
    for body in ({}, {"payment_id": "p-rf"}):
        assert_problem(api.post(f"billing/orders/{order['id']}/confirm", json=body,
                                key=acme.key), 409, "invalid_order_state")
    assert remaining(api, acme.key, "rf") == 0


def test_signals_sent_once_each(api: Api, acme: TenantFixture, catalog: Catalog,
                                sent: dict[str, list[dict[str, Any]]]) -> None:
    paid = create(api, acme.key, "sig", {"sku": "reports_10"})
    dropped = create(api, acme.key, "sig", {"sku": "reports_10"})
    assert len(sent["order_created"]) == 2
    for _ in range(2):
        api.post(f"billing/orders/{paid['id']}/confirm", json={"payment_id": "p-sig"},
                 key=acme.key)
    api.post(f"billing/orders/{dropped['id']}/cancel", key=acme.key)
    api.post(f"billing/orders/{dropped['id']}/cancel", key=acme.key)
    api.post(f"billing/orders/{paid['id']}/refund", key=acme.key)
    api.post(f"billing/orders/{paid['id']}/refund", key=acme.key)
    assert [str(c["order"].pk) for c in sent["order_confirmed"]] == [paid["id"]]
    assert len(sent["order_confirmed"][0]["batches"]) == 1
    assert [str(c["order"].pk) for c in sent["order_cancelled"]] == [dropped["id"]]
    assert [str(c["order"].pk) for c in sent["order_refunded"]] == [paid["id"]]
    assert len(sent["order_created"]) == 2


# --- Exchange


@pytest.fixture
def coins(catalog: Catalog, acme: TenantFixture) -> dict[str, Any]:
    with schema_context(acme.tenant.schema_name):
        product_create(key="coins", name="Coins", product_type="quantity", is_currency=True)
        pack = offer_create(sku="coins_100", name="100 coins", price=Decimal("5"),
                            currency="USD", items=[ItemSpec("COINS", 100)])
        badge = offer_create(sku="reports_for_coins", name="Reports for coins",
                             price=Decimal("30"), currency="COINS",
                             items=[ItemSpec("REPORTS", 3)])
        customer = customer_ensure(CustomerRef(external_id="ex"))
        offer_grant(customer=customer, offer=pack, kind="bonus")
    return {"pack": pack, "badge": badge, "customer": customer}


def test_exchange_spends_currency_and_grants(api: Api, acme: TenantFixture, coins: Any,
                                             sent: dict[str, list[dict[str, Any]]]) -> None:
    response = api.post("billing/exchange", json={"external_id": "ex",
                                                  "sku": "reports_for_coins"}, key=acme.key)
    assert response.status == 200, response.body
    order = response.json
    assert order["status"] == "paid" and order["payment_method"] == "exchange"
    assert order["paid_at"] is not None
    assert order["items"][0]["sku"] == "REPORTS_FOR_COINS"
    assert remaining(api, acme.key, "ex", "coins") == 70
    assert remaining(api, acme.key, "ex", "reports") == 3
    assert len(sent["order_created"]) == 1 and len(sent["order_confirmed"]) == 1
    listed = api.get("billing/orders", key=acme.key,
                     query={"external_id": "ex", "status": "paid"}).json
    assert [o["id"] for o in listed["items"]] == [order["id"]]
    with schema_context(acme.tenant.schema_name):
        debits = LedgerEntry.objects.filter(direction="debit", action_type="exchange",
                                            action_id=order["id"])
        assert debits.aggregate(s=Sum("amount"))["s"] == 30


def test_exchange_short_is_402_and_changes_nothing(api: Api, acme: TenantFixture,
                                                   coins: Any) -> None:
    for _ in range(3):
        assert api.post("billing/exchange", json={"external_id": "ex",
                                                  "sku": "reports_for_coins"},
                        key=acme.key).status == 200
    short = api.post("billing/exchange", json={"external_id": "ex", "sku": "reports_for_coins"},
                     key=acme.key)
    assert short.status == 402, short.body
    assert short.json["code"] in ("insufficient_quota", "quota_exhausted")
    assert remaining(api, acme.key, "ex", "coins") == 10
    assert remaining(api, acme.key, "ex", "reports") == 9
    with schema_context(acme.tenant.schema_name):
        assert Order.objects.filter(payment_method="exchange").count() == 3
    nobody = api.post("billing/exchange", json={"external_id": "poor", "sku": "reports_for_coins"},
                      key=acme.key)
    assert nobody.status == 402
    assert nobody.json["code"] in ("insufficient_quota", "quota_exhausted")


def test_exchange_spends_only_the_currency_product(api: Api, acme: TenantFixture,
                                                  coins: Any) -> None:
    # A non-currency product that lists the currency's key among its features is not money.
    with schema_context(acme.tenant.schema_name):
        product_create(key="points", name="Points", product_type="quantity", features=["coins"])
        points = offer_create(sku="points_50", name="50 points", price=Decimal("1"),
                              currency="USD", items=[ItemSpec("POINTS", 50)])
        holder = customer_ensure(CustomerRef(external_id="points-only"))
        offer_grant(customer=holder, offer=points, kind="bonus")
    response = api.post("billing/exchange", json={"external_id": "points-only",
                                                  "sku": "reports_for_coins"}, key=acme.key)
    assert_problem(response, 402, "quota_exhausted")
    assert remaining(api, acme.key, "points-only", "points") == 50
    assert remaining(api, acme.key, "points-only", "reports") == 0
    # The real currency is spent, and the points stay where they are.
    with schema_context(acme.tenant.schema_name):
        offer_grant(customer=holder, offer=coins["pack"], kind="bonus")
    paid = api.post("billing/exchange", json={"external_id": "points-only",
                                              "sku": "reports_for_coins"}, key=acme.key)
    assert paid.status == 200, paid.body
    with schema_context(acme.tenant.schema_name):
        coin_batches = QuotaBatch.objects.filter(customer=holder, product__key="COINS")
        assert coin_batches.aggregate(s=Sum("remaining"))["s"] == 70
    assert remaining(api, acme.key, "points-only", "points") == 50


def test_exchange_spending_the_last_coins_sends_depleted(
    api: Api, acme: TenantFixture, coins: Any
) -> None:
    depleted: list[dict[str, Any]] = []

    def receive(sender: Any, **kwargs: Any) -> None:
        depleted.append(kwargs)

    with connected(signals.quota_depleted, receive):
        for _ in range(3):  # 100 -> 70 -> 40 -> 10
            assert api.post("billing/exchange", json={"external_id": "ex",
                                                      "sku": "reports_for_coins"},
                            key=acme.key).status == 200
        assert depleted == []
        with schema_context(acme.tenant.schema_name):
            offer_create(sku="reports_for_10_coins", name="One report", price=Decimal("10"),
                         currency="COINS", items=[ItemSpec("REPORTS", 1)])
        assert api.post("billing/exchange", json={"external_id": "ex",
                                                  "sku": "reports_for_10_coins"},
                        key=acme.key).status == 200  # 10 -> 0
    assert [(c["feature"], c["customer"].pk) for c in depleted] == [
        ("COINS", coins["customer"].pk)
    ]


def test_exchange_of_money_offer_is_not_a_currency(api: Api, acme: TenantFixture,
                                                   coins: Any) -> None:
    response = api.post("billing/exchange", json={"external_id": "ex", "sku": "reports_10"},
                        key=acme.key)
    assert_problem(response, 422, "not_a_currency")
    assert remaining(api, acme.key, "ex", "coins") == 100


def test_orders_show_their_reason_and_times(
    api: Api, acme: TenantFixture, catalog: Catalog
) -> None:
    made = api.post("billing/orders", json={"external_id": "rs", "items": [{"sku": "reports_10"}]},
                    key=acme.key).json
    assert (made["reason"], made["cancelled_at"], made["refunded_at"]) == ("", None, None)
    cancelled = api.post(f"billing/orders/{made['id']}/cancel", json={"reason": "changed mind"},
                         key=acme.key).json
    assert cancelled["reason"] == "changed mind" and cancelled["cancelled_at"] is not None
    other = api.post("billing/orders", json={"external_id": "rs",
                                             "items": [{"sku": "reports_10"}]},
                     key=acme.key).json
    api.post(f"billing/orders/{other['id']}/confirm", json={}, key=acme.key)
    refunded = api.post(f"billing/orders/{other['id']}/refund", json={"reason": "duplicate"},
                        key=acme.key).json
    assert (refunded["reason"], refunded["cancelled_at"]) == ("duplicate", None)
    assert refunded["refunded_at"] >= refunded["paid_at"]
    listed = api.get(f"billing/orders/{other['id']}", key=acme.key).json
    assert listed["refunded_at"] == refunded["refunded_at"]
