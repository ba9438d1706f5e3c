"""Orders, exchange, referrals and merge through the API (a walk through the main paths)."""

from __future__ import annotations

from typing import Any

from tests.support.api import Api, assert_problem
from tests.support.tenants import TenantFixture


def test_order_lifecycle(api: Api, acme: TenantFixture, catalog: dict[str, Any]) -> None:
    key = acme.key
    created = api.post(
        "billing/orders",
        json={"external_id": "o1", "items": [{"sku": "reports_10", "quantity": 2, "price": "0"}]},
        key=key,
    )
    assert created.status == 201, created.body
    order = created.json
    assert order["status"] == "pending" and order["total"] == "18.00"
    assert order["items"][0]["unit_price"] == "9.00"
    confirmed = api.post(f"billing/orders/{order['id']}/confirm",
                         json={"payment_id": "pay_1"}, key=key)
    assert confirmed.status == 200, confirmed.body
    assert confirmed.json["status"] == "paid" and confirmed.json["paid_at"]
    balance = api.get("billing/balance", key=key,
                      query={"external_id": "o1", "feature": "reports"}).json
    assert balance["remaining"] == 20
    again = api.post(f"billing/orders/{order['id']}/confirm", json={"payment_id": "pay_1"},
                     key=key)
    assert again.status == 200
    assert api.get("billing/balance", key=key,
                   query={"external_id": "o1", "feature": "reports"}).json["remaining"] == 20
    assert_problem(api.post(f"billing/orders/{order['id']}/confirm",
                            json={"payment_id": "pay_2"}, key=key), 409, "order_already_paid")
    assert_problem(api.post(f"billing/orders/{order['id']}/cancel", key=key), 409,
                   "invalid_order_state")
    api.post("billing/quota/consume", json={"external_id": "o1", "feature": "reports",
                                           "amount": 5}, key=key)
    refunded = api.post(f"billing/orders/{order['id']}/refund", key=key)
    assert refunded.status == 200 and refunded.json["status"] == "refunded"
    assert api.get("billing/balance", key=key,
                   query={"external_id": "o1", "feature": "reports"}).json["remaining"] == 0
    assert_problem(api.post(f"billing/orders/{order['id']}/confirm", key=key), 409,
                   "invalid_order_state")
    other = api.post("billing/orders", json={"external_id": "o2",
                                             "items": [{"sku": "REPORTS_10"}]}, key=key).json
    assert_problem(api.post(f"billing/orders/{other['id']}/confirm",
                            json={"payment_id": "pay_1"}, key=key), 409, "payment_id_conflict")


def test_referral_and_merge(api: Api, acme: TenantFixture, catalog: dict[str, Any]) -> None:
    key = acme.key
    first = api.post("billing/referrals", json={"referrer": {"external_id": "r1"},
                                                "referee": {"external_id": "r2"}}, key=key)
    assert first.status == 201 and first.json["created"] is True
    same = api.post("billing/referrals", json={"referrer": {"external_id": "r1"},
                                               "referee": {"external_id": "r2"}}, key=key)
    assert same.status == 200 and same.json["created"] is False
    assert_problem(api.post("billing/referrals", json={"referrer": {"external_id": "r2"},
                                                       "referee": {"external_id": "r1"}},
                            key=key), 409, "referral_cycle")
    assert_problem(api.post("billing/referrals", json={"referrer": {"external_id": "r1"},
                                                       "referee": {"external_id": "r1"}},
                            key=key), 422, "self_referral")
    stats = api.get("billing/referrals/stats", key=key, query={"external_id": "r1"}).json
    assert stats == {"referred": 1, "rewarded": 0}
    a = api.post("billing/identify", json={"provider": "tg", "external_id": 1}, key=key).json
    b = api.post("billing/identify", json={"provider": "email", "external_id": "x@y.z"},
                 key=key).json
    merged = api.post("billing/customers/merge", json={
        "target_customer_id": a["customer_id"], "source_customer_id": b["customer_id"]}, key=key)
    assert merged.status == 200, merged.body
    assert merged.json["moved_identities"] == 1
    source = api.get(f"billing/customers/{b['customer_id']}", key=key).json
    assert source["merged_into"] == a["customer_id"]
