"""Real events of every type validate against their documented `data` models."""

from __future__ import annotations

import json
import os
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from pydantic import ValidationError

from billable import clock
from billing_platform.operations.services import platform_sweep
from billing_platform.webhooks.events import EVENT_TYPES, PAYLOADS, validate_data
from billing_platform.webhooks.models import Event
from tests.support.api import Api
from tests.support.tenants import TenantFixture
from tests.support.webhooks import create_endpoint


def _ok(response: Any, status: int = 200) -> Any:
    assert response.status == status, response.body
    return response.json


def produce_every_event(api: Api, acme: TenantFixture) -> None:
    """Drive the API (and one sweep) so that each event type fires at least once."""
    key = acme.key
    _ok(api.patch("settings", json={"low_balance_threshold": 3,
                                    "referral_reward_sku": "reports_5_forever"}, key=key))
    # grant.created, trial.activated
    _ok(api.post("billing/grants", json={"external_id": "Zoë", "sku": "reports_10",
                                         "kind": "bonus"}, key=key), 201)
    _ok(api.post("billing/grants", json={"external_id": "trial-1", "sku": "reports_5_forever",
                                         "kind": "trial", "identities": {"phone": "+15550001"}},
                 key=key), 201)
    # quota.consumed, quota.low, quota.depleted
    _ok(api.post("billing/quota/consume", json={"external_id": "trial-1", "feature": "reports",
                                                "amount": 2}, key=key))
    _ok(api.post("billing/quota/consume", json={"external_id": "trial-1", "feature": "reports",
                                                "amount": 3}, key=key))
    # quota.threshold_reached: a rule for reports (from now on the setting's quota.low no longer
    # applies to reports); the hold below takes Zoë's 10 reports to 8, through 9
    _ok(api.post("billing/alert-rules", json={"feature": "reports", "thresholds": [
        {"type": "absolute", "value": 9}, {"type": "percent", "value": 50}]}, key=key), 201)
    # hold.created, hold.committed, hold.released
    hold = _ok(api.post("billing/holds", json={"external_id": "Zoë", "feature": "reports",
                                               "amount": 2}, key=key), 201)
    _ok(api.post(f"billing/holds/{hold['id']}/commit", json={"amount": 1}, key=key))
    hold = _ok(api.post("billing/holds", json={"external_id": "Zoë", "feature": "reports",
                                               "amount": 1}, key=key), 201)
    _ok(api.post(f"billing/holds/{hold['id']}/release", json={}, key=key))
    # adjustment.created (customer.created came with the first grant)
    _ok(api.post("billing/adjustments", json={"external_id": "Zoë", "product": "reports",
                                              "amount": 2, "reason": "goodwill"}, key=key), 201)
    # referral.attached, order.created, order.confirmed, referral.rewarded, order.refunded
    _ok(api.post("billing/referrals", json={"referrer": {"external_id": "Zoë"},
                                            "referee": {"external_id": "ref-2"}}, key=key), 201)
    order = _ok(api.post("billing/orders", json={"external_id": "ref-2",
                                                 "items": [{"sku": "reports_10", "quantity": 1}]},
                         key=key), 201)
    _ok(api.post(f"billing/orders/{order['id']}/confirm", json={"payment_id": "pay_1"}, key=key))
    # batch.revoked: the refund takes back the order's batch
    _ok(api.post(f"billing/orders/{order['id']}/refund", json={"reason": "asked"}, key=key))
    # order.cancelled
    order = _ok(api.post("billing/orders", json={"external_id": "Zoë",
                                                 "items": [{"sku": "pro_month", "quantity": 1}]},
                         key=key), 201)
    _ok(api.post(f"billing/orders/{order['id']}/cancel", json={}, key=key))
    # customer.merged
    target = _ok(api.post("billing/identify", json={"external_id": "merge-a"}, key=key))
    source = _ok(api.post("billing/identify", json={"provider": "telegram", "external_id": 77},
                          key=key))
    _ok(api.post("billing/customers/merge", json={
        "target_customer_id": target["customer_id"],
        "source_customer_id": source["customer_id"]}, key=key))
    # product.deactivated
    _ok(api.patch("billing/products/unl", json={"is_active": False}, key=key))
    # subscription.created now; at the sweep below, the free plan renews (subscription.renewed,
    # allowance.reset), the paid one is due for renewal (subscription.renewal_due), goes past
    # due and, its grace gone, expires, and the one
    # cancelled at period end is cancelled
    for plan_key, price in (("free_plan", "0"), ("paid_plan", "5"), ("paid_plus", "9")):
        _ok(api.post("billing/plans", json={
            "key": plan_key, "name": plan_key, "price": price, "currency": "USD",
            "entitlements": [{"type": "allowance", "product": "reports", "amount": 3}]},
            key=key), 201)
    for external_id, plan in (("sub-free", "free_plan"), ("sub-paid", "paid_plan"),
                              ("sub-cancel", "free_plan")):
        created = _ok(api.post("billing/subscriptions", json={
            "external_id": external_id, "plan": plan}, key=key), 201)
        if plan == "paid_plan":  # subscription.plan_changed: an upgrade, at once
            _ok(api.post(f"billing/subscriptions/{created['id']}/change",
                         json={"plan": "paid_plus"}, key=key))
        if plan == "free_plan" and external_id == "sub-free":  # .paused, .resumed
            _ok(api.post(f"billing/subscriptions/{created['id']}/pause", json={}, key=key))
            _ok(api.post(f"billing/subscriptions/{created['id']}/unpause", json={}, key=key))
    _ok(api.post(f"billing/subscriptions/{created['id']}/cancel", json={}, key=key))
    # batch.expired: the 30-day batches of reports_10 expire
    connection.set_schema_to_public()
    with clock.frozen(clock.now() + timedelta(days=40)):
        platform_sweep(everything=True)
    connection.set_schema_to_public()


def test_every_event_type_validates_against_its_model(
    api: Api, acme: TenantFixture, catalog: dict[str, Any], private_ok: Any
) -> None:
    # given an endpoint subscribed to everything
    endpoint = create_endpoint(api, acme.key, "http://127.0.0.1:9/hook")
    # when every kind of billing work happens
    produce_every_event(api, acme)
    _ok(api.post(f"webhooks/endpoints/{endpoint['id']}/test", key=acme.key), 202)
    # then each type was written and its data parses with its documented model
    events = list(Event.objects.filter(tenant=acme.tenant).order_by("created_at"))
    seen = {event.type for event in events}
    assert seen == set(EVENT_TYPES), set(EVENT_TYPES) - seen
    for event in events:
        validate_data(event.type, event.data)
    examples: dict[str, Any] = {}
    listed = api.get("webhooks/events", key=acme.key, query={"limit": 200}).json["items"]
    for item in reversed(listed):
        examples.setdefault(item["type"], item)
    if os.environ.get("WEBHOOK_EXAMPLES_OUT"):  # docs/webhooks.md takes its examples from here
        with open(os.environ["WEBHOOK_EXAMPLES_OUT"], "w") as out:
            json.dump(examples, out, indent=2, ensure_ascii=False)


@pytest.mark.parametrize("event_type", sorted(PAYLOADS))
def test_models_refuse_drifted_data(event_type: str) -> None:
    with pytest.raises(ValidationError):
        validate_data(event_type, {"unexpected": 1})


def test_customer_events_carry_the_identities(
    api: Api, acme: TenantFixture, catalog: dict[str, Any], private_ok: Any
) -> None:
    create_endpoint(api, acme.key, "http://127.0.0.1:9/hook", event_types=["order.created"])
    _ok(api.post("billing/identify", json={"provider": "telegram", "external_id": 4242},
                 key=acme.key))
    _ok(api.post("billing/orders", json={"external_id": 4242, "provider": "telegram",
                                         "items": [{"sku": "reports_10", "quantity": 2}]},
                 key=acme.key), 201)
    (event,) = Event.objects.filter(tenant=acme.tenant)
    data = validate_data("order.created", event.data).model_dump()
    assert data["customer"]["identities"] == [{"provider": "telegram", "external_id": "4242"}]
    assert [(i["sku"], i["quantity"]) for i in data["items"]] == [("REPORTS_10", 2)]


def test_new_customers_and_revoked_batches_are_announced_once(
    api: Api, acme: TenantFixture, catalog: dict[str, Any], private_ok: Any
) -> None:
    create_endpoint(api, acme.key, "http://127.0.0.1:9/hook",
                    event_types=["customer.created", "batch.revoked"])
    # identify twice: one customer, one event; a consume by an unknown identity makes none
    first = _ok(api.post("billing/identify", json={"external_id": "new-1"}, key=acme.key))
    _ok(api.post("billing/identify", json={"external_id": "new-1"}, key=acme.key))
    assert api.post("billing/quota/consume", json={"external_id": "nobody", "feature": "reports"},
                    key=acme.key).status == 402
    grant = _ok(api.post("billing/grants", json={"external_id": "new-1", "sku": "reports_10",
                                                 "kind": "bonus"}, key=acme.key), 201)
    batch_id = grant["batches"][0]["id"]
    _ok(api.post(f"billing/batches/{batch_id}/revoke", json={"reason": "abuse"}, key=acme.key))
    events = list(Event.objects.filter(tenant=acme.tenant).order_by("created_at"))
    assert [e.type for e in events] == ["customer.created", "batch.revoked"]
    created = validate_data("customer.created", events[0].data).model_dump()
    assert created["customer_id"] == created["customer"]["id"] == first["customer_id"]
    assert created["customer"]["identities"] == [{"provider": "default", "external_id": "new-1"}]
    revoked = validate_data("batch.revoked", events[1].data).model_dump()
    assert (revoked["id"], revoked["state"], revoked["remaining"]) == (batch_id, "revoked", 0)
    assert (revoked["action_type"], revoked["reason"]) == ("revoke", "abuse")
    assert revoked["customer"]["id"] == first["customer_id"]


def test_order_events_show_declared_currency_amounts(
    api: Api, acme: TenantFixture, catalog: dict[str, Any], private_ok: Any
) -> None:
    create_endpoint(api, acme.key, "http://127.0.0.1:9/hook", event_types=["order.created"])
    _ok(api.post("billing/currencies", json={"code": "xtr", "name": "Telegram Stars",
                                             "minor_digits": 0}, key=acme.key), 201)
    _ok(api.post("billing/offers", json={"sku": "stars_50", "name": "50 stars", "price": "50",
                                         "currency": "XTR",
                                         "items": [{"product": "reports", "quantity": 5}]},
                 key=acme.key), 201)
    _ok(api.post("billing/orders", json={"external_id": 4242, "provider": "telegram",
                                         "items": [{"sku": "stars_50", "quantity": 2}]},
                 key=acme.key), 201)
    (event,) = Event.objects.filter(tenant=acme.tenant)
    data = validate_data("order.created", event.data).model_dump()
    assert (data["total"], data["currency"]) == ("100", "XTR")
    assert data["items"][0]["unit_price"] == "50"


def test_imported_customers_are_announced(
    api: Api, acme: TenantFixture, private_ok: Any
) -> None:
    create_endpoint(api, acme.key, "http://127.0.0.1:9/hook", event_types=["customer.created"])
    _ok(api.post("billing/identify", json={"external_id": "known"}, key=acme.key))
    answer = _ok(api.post("billing/customers/import", json={"customers": [
        {"identities": [{"provider": "telegram", "external_id": 5}]},
        {"identities": [{"external_id": "known"}, {"provider": "email", "external_id": "k@x.io"}]},
    ]}, key=acme.key))
    assert (answer["created"], answer["updated"]) == (1, 1)
    events = list(Event.objects.filter(tenant=acme.tenant).order_by("created_at"))
    assert [e.type for e in events] == ["customer.created", "customer.created"]
    imported = validate_data("customer.created", events[1].data).model_dump()
    assert imported["customer_id"] == answer["customers"][0]["customer_id"]
    assert imported["customer"]["identities"] == [{"provider": "telegram", "external_id": "5"}]
