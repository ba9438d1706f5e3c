"""The outbox is written with the billing change or not at all; only for subscribed types."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.db import connection, transaction
from django.utils import timezone

from billable.models import Customer
from billable.services.quota import quota_consume
from billing_platform.operations.services import platform_sweep
from billing_platform.webhooks.models import Delivery, DeliveryAttempt, Event
from tests.support.api import Api
from tests.support.servers import running_receiver
from tests.support.tenants import TenantFixture
from tests.support.webhooks import create_endpoint, drain, grant_and_consume

URL = "http://127.0.0.1:9/hook"


@pytest.mark.parametrize("idempotency_key", [None, "consume-402"])
def test_a_consume_that_402s_writes_no_event(
    api: Api, acme: TenantFixture, catalog: dict[str, Any], private_ok: Any,
    idempotency_key: str | None,
) -> None:
    create_endpoint(api, acme.key, URL)
    headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
    response = api.post("billing/quota/consume",
                        json={"external_id": "nobody", "feature": "reports", "amount": 5},
                        key=acme.key, headers=headers)
    assert response.status == 402
    assert not Event.objects.filter(tenant=acme.tenant).exists()
    assert not Delivery.objects.exists()


def test_a_service_call_rolled_back_writes_no_event(
    api: Api, acme: TenantFixture, catalog: dict[str, Any], private_ok: Any
) -> None:
    create_endpoint(api, acme.key, URL)
    assert grant_and_consume(api, acme.key).status == 200
    before = Event.objects.filter(tenant=acme.tenant).count()
    connection.set_schema(acme.tenant.schema_name)
    customer = Customer.objects.get(identities__external_id="w1")
    seen_inside: list[int] = []

    def consume_then_fail() -> None:
        with transaction.atomic():
            quota_consume(customer=customer, feature="reports", amount=1)
            seen_inside.append(Event.objects.filter(tenant=acme.tenant).count())
            raise RuntimeError("the caller fails after the service")

    with pytest.raises(RuntimeError):
        consume_then_fail()
    assert seen_inside == [before + 1]
    assert Event.objects.filter(tenant=acme.tenant).count() == before


def test_no_subscribed_endpoint_no_event(
    api: Api, acme: TenantFixture, catalog: dict[str, Any], private_ok: Any
) -> None:
    assert grant_and_consume(api, acme.key).status == 200
    assert not Event.objects.filter(tenant=acme.tenant).exists()
    create_endpoint(api, acme.key, URL, event_types=["order.created"])
    api.post("billing/quota/consume", json={"external_id": "w1", "feature": "reports"},
             key=acme.key)
    assert not Event.objects.filter(tenant=acme.tenant).exists()
    inactive = create_endpoint(api, acme.key, URL, is_active=False)
    api.post("billing/quota/consume", json={"external_id": "w1", "feature": "reports"},
             key=acme.key)
    assert not Event.objects.filter(tenant=acme.tenant).exists()
    assert not Delivery.objects.filter(endpoint_id=inactive["id"]).exists()


def test_event_types_route_to_the_subscribers_only(
    api: Api, acme: TenantFixture, globex: TenantFixture, catalog: dict[str, Any],
    private_ok: Any,
) -> None:
    consumed = create_endpoint(api, acme.key, URL, event_types=["quota.consumed"])
    orders = create_endpoint(api, acme.key, URL, event_types=["order.created"])
    everything = create_endpoint(api, acme.key, URL)
    theirs = create_endpoint(api, globex.key, URL)
    assert grant_and_consume(api, acme.key).status == 200
    types = dict(Event.objects.filter(tenant=acme.tenant).values_list("type", "id"))
    assert set(types) == {"customer.created", "grant.created", "quota.consumed"}
    routed = {(d.event.type, str(d.endpoint_id)) for d in Delivery.objects.select_related("event")}
    assert routed == {
        ("customer.created", everything["id"]),
        ("grant.created", everything["id"]),
        ("quota.consumed", everything["id"]),
        ("quota.consumed", consumed["id"]),
    }
    assert orders["id"] not in {e for _, e in routed} and theirs["id"] not in {e for _, e in routed}
    assert not Event.objects.filter(tenant=globex.tenant).exists()


def test_the_sweep_purges_what_is_older_than_30_days(
    api: Api, acme: TenantFixture, catalog: dict[str, Any], private_ok: Any
) -> None:
    with running_receiver() as receiver:
        create_endpoint(api, acme.key, receiver.url,
                        event_types=["grant.created", "quota.consumed"])
        assert grant_and_consume(api, acme.key).status == 200
        drain()
    old, recent = Event.objects.filter(tenant=acme.tenant).order_by("type")
    Event.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=31))
    recent_attempt = DeliveryAttempt.objects.get(delivery__event=recent)
    stale_attempt = DeliveryAttempt.objects.create(delivery=recent_attempt.delivery)
    DeliveryAttempt.objects.filter(pk=stale_attempt.pk).update(
        attempted_at=timezone.now() - timedelta(days=31)
    )
    totals = platform_sweep()
    assert totals["events_purged"] == 1
    assert list(Event.objects.filter(tenant=acme.tenant)) == [recent]
    assert not Delivery.objects.filter(event_id=old.pk).exists()
    assert not DeliveryAttempt.objects.filter(delivery__event_id=old.pk).exists()
    assert list(DeliveryAttempt.objects.filter(delivery__event=recent)) == [recent_attempt]


def test_erasing_a_customer_scrubs_its_identities_from_stored_events(
    api: Api, acme: TenantFixture, catalog: dict[str, Any], private_ok: Any
) -> None:
    # given: events about two customers, each carrying the customer's identities
    create_endpoint(api, acme.key, URL)
    assert grant_and_consume(api, acme.key, external_id="erase-me").status == 200
    assert grant_and_consume(api, acme.key, external_id="keep-me").status == 200
    connection.set_schema(acme.tenant.schema_name)
    erased_id = Customer.objects.get(identities__external_id="erase-me").pk

    def identities(external_id: str) -> list[Any]:
        return [
            e.data["customer"]["identities"]
            for e in Event.objects.filter(tenant=acme.tenant)
            if e.data["customer"]["identities"]
            and e.data["customer"]["identities"][0]["external_id"] == external_id
        ]

    assert len(identities("erase-me")) == 3  # customer.created, grant.created, quota.consumed

    # when
    assert api.delete(f"billing/customers/{erased_id}", key=acme.key).status == 204

    # then: the erased customer's events stay (the ledger happened) but name nobody
    assert identities("erase-me") == []
    scrubbed = [e for e in Event.objects.filter(tenant=acme.tenant)
                if e.data["customer"]["id"] == str(erased_id)]
    assert len(scrubbed) == 3 and all(e.data["customer"]["identities"] == [] for e in scrubbed)
    assert len(identities("keep-me")) == 3
    listed = api.get("webhooks/events", key=acme.key).json["items"]
    assert "erase-me" not in str(listed) and "keep-me" in str(listed)
