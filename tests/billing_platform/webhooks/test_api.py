"""`/webhooks`: endpoints CRUD, limits, test events, listings, redelivery, tenant isolation."""

from __future__ import annotations

from typing import Any

from billing_platform.core import crypto
from billing_platform.webhooks.models import Delivery, DeliveryAttempt, Endpoint, Event
from tests.support.api import Api, assert_problem
from tests.support.servers import running_receiver
from tests.support.tenants import TenantFixture
from tests.support.webhooks import create_endpoint, drain, grant_and_consume

URL = "http://127.0.0.1:9/hook"


def test_endpoint_crud_with_masked_headers(
    api: Api, acme: TenantFixture, private_ok: Any
) -> None:
    created = api.post(
        "webhooks/endpoints",
        json={"url": URL, "event_types": ["order.created", "order.created"],
              "description": "n8n", "headers": {"X-N8N-Auth": "s3cret-value"}},
        key=acme.key,
    )
    assert created.status == 201
    body = created.json
    assert body["secret"].startswith("whsec_")
    assert body["event_types"] == ["order.created"]
    assert body["headers"] == {"X-N8N-Auth": "••••"}
    row = Endpoint.objects.get(pk=body["id"])
    assert "s3cret-value" not in row.headers_encrypted
    assert body["secret"] not in row.secret_encrypted
    assert crypto.decrypt(row.secret_encrypted) == body["secret"]

    shown = api.get(f"webhooks/endpoints/{body['id']}", key=acme.key)
    assert shown.status == 200 and "secret" not in shown.json
    assert b"s3cret-value" not in shown.body
    listed = api.get("webhooks/endpoints", key=acme.key).json["items"]
    assert [e["id"] for e in listed] == [body["id"]] and "secret" not in listed[0]

    patched = api.patch(
        f"webhooks/endpoints/{body['id']}",
        json={"description": "changed", "event_types": [], "headers": {"A": "1", "B": "2"}},
        key=acme.key,
    )
    assert patched.status == 200
    assert patched.json["description"] == "changed"
    assert patched.json["event_types"] == []
    assert patched.json["headers"] == {"A": "••••", "B": "••••"}
    assert patched.json["url"] == URL

    bad = api.patch(f"webhooks/endpoints/{body['id']}", json={"event_types": ["nope.x"]},
                    key=acme.key)
    assert bad.status == 422

    assert api.delete(f"webhooks/endpoints/{body['id']}", key=acme.key).status == 204
    assert_problem(api.get(f"webhooks/endpoints/{body['id']}", key=acme.key), 404,
                   "endpoint_not_found")
    assert_problem(api.get("webhooks/endpoints/not-a-uuid", key=acme.key), 404,
                   "endpoint_not_found")


def test_twenty_endpoints_at_most(api: Api, acme: TenantFixture, private_ok: Any) -> None:
    for n in range(20):
        create_endpoint(api, acme.key, f"{URL}{n}")
    response = api.post("webhooks/endpoints", json={"url": URL}, key=acme.key)
    assert_problem(response, 409, "too_many_endpoints")
    assert Endpoint.objects.filter(tenant=acme.tenant).count() == 20


def test_test_event_goes_to_that_endpoint_only(
    api: Api, acme: TenantFixture, private_ok: Any
) -> None:
    with running_receiver() as receiver, running_receiver() as other:
        narrow = create_endpoint(api, acme.key, receiver.url, event_types=["order.refunded"])
        create_endpoint(api, acme.key, other.url)  # subscribed to everything
        sent = api.post(f"webhooks/endpoints/{narrow['id']}/test", key=acme.key)
        assert sent.status == 202
        assert sent.json["status"] == "accepted" and sent.json["queued"] == 1
        drain()
        (received,) = receiver.wait_for(1)
        assert other.count() == 0
    events = api.get("webhooks/events", key=acme.key, query={"type": "webhook.test"}).json
    (event,) = events["items"]
    assert event["id"] == sent.json["event_id"] == received.headers["webhook-id"]
    assert event["data"] == {"endpoint_id": narrow["id"], "message": "Test event from Billable."}


def test_event_and_delivery_listings_filter(
    api: Api, acme: TenantFixture, catalog: dict[str, Any], private_ok: Any
) -> None:
    with running_receiver() as receiver:
        first = create_endpoint(api, acme.key, receiver.url, event_types=["quota.consumed"])
        second = create_endpoint(api, acme.key, receiver.url,
                                 event_types=["grant.created", "quota.consumed"])
        receiver.script = [500]
        private_ok.WEBHOOK_RETRY_SCHEDULE = []
        assert grant_and_consume(api, acme.key).status == 200
        drain()
    events = api.get("webhooks/events", key=acme.key).json["items"]
    assert sorted(e["type"] for e in events) == ["grant.created", "quota.consumed"]
    consumed = api.get("webhooks/events", key=acme.key, query={"type": "quota.consumed"})
    assert [e["type"] for e in consumed.json["items"]] == ["quota.consumed"]
    page = api.get("webhooks/events", key=acme.key, query={"limit": 1}).json
    assert len(page["items"]) == 1 and page["next_cursor"]
    rest = api.get("webhooks/events", key=acme.key,
                   query={"limit": 1, "cursor": page["next_cursor"]}).json
    assert rest["items"][0]["id"] != page["items"][0]["id"] and rest["next_cursor"] is None

    every = api.get("webhooks/deliveries", key=acme.key).json["items"]
    assert len(every) == 3
    by_first = api.get("webhooks/deliveries", key=acme.key,
                       query={"endpoint_id": first["id"]}).json["items"]
    assert [d["endpoint_id"] for d in by_first] == [first["id"]]
    failed = api.get("webhooks/deliveries", key=acme.key, query={"status": "failed"}).json
    assert len(failed["items"]) == 1 and failed["items"][0]["last_status_code"] == 500
    ok = api.get("webhooks/deliveries", key=acme.key, query={"status": "succeeded"}).json
    assert len(ok["items"]) == 2
    assert {d["endpoint_id"] for d in ok["items"]} | {failed["items"][0]["endpoint_id"]} == {
        first["id"], second["id"]
    }
    by_event = api.get("webhooks/deliveries", key=acme.key,
                       query={"event_id": consumed.json["items"][0]["id"]}).json["items"]
    assert len(by_event) == 2
    nothing = api.get("webhooks/deliveries", key=acme.key, query={"endpoint_id": "zzz"})
    assert nothing.status == 200 and nothing.json["items"] == []
    assert DeliveryAttempt.objects.filter(delivery__endpoint__tenant=acme.tenant).count() == 3


def test_redeliver_sends_again_to_all_or_one(
    api: Api, acme: TenantFixture, catalog: dict[str, Any], private_ok: Any
) -> None:
    with running_receiver() as receiver:
        first = create_endpoint(api, acme.key, receiver.url, event_types=["quota.consumed"])
        create_endpoint(api, acme.key, receiver.url,
                        event_types=["grant.created", "quota.consumed"])
        create_endpoint(api, acme.key, receiver.url, event_types=["order.created"])
        grant_and_consume(api, acme.key)
        event = Event.objects.get(tenant=acme.tenant, type="quota.consumed")
        drain()
        assert receiver.count() == 3  # grant.created once, quota.consumed twice
        everywhere = api.post(f"webhooks/events/{event.pk}/redeliver", json={}, key=acme.key)
        assert everywhere.status == 202 and everywhere.json["queued"] == 2
        one = api.post(f"webhooks/events/{event.pk}/redeliver",
                       json={"endpoint_id": first["id"]}, key=acme.key)
        assert one.status == 202 and one.json["queued"] == 1
        drain()
        requests = receiver.wait_for(6)
    again = [r for r in requests if r.headers["webhook-id"] == event.pk]
    assert len(again) == 5
    assert len({r.body for r in again}) == 1
    assert Delivery.objects.filter(event=event, status="succeeded").count() == 5


def test_other_tenants_ids_are_not_found(
    api: Api, acme: TenantFixture, globex: TenantFixture, private_ok: Any
) -> None:
    endpoint = create_endpoint(api, acme.key, URL)
    sent = api.post(f"webhooks/endpoints/{endpoint['id']}/test", key=acme.key).json
    path = f"webhooks/endpoints/{endpoint['id']}"
    for response in (
        api.get(path, key=globex.key),
        api.patch(path, json={"description": "mine"}, key=globex.key),
        api.delete(path, key=globex.key),
        api.post(f"{path}/rotate-secret", key=globex.key),
        api.post(f"{path}/test", key=globex.key),
    ):
        assert_problem(response, 404, "endpoint_not_found")
    assert_problem(
        api.post(f"webhooks/events/{sent['event_id']}/redeliver", json={}, key=globex.key),
        404, "event_not_found",
    )
    own = create_endpoint(api, globex.key, URL)
    own_event = api.post(f"webhooks/endpoints/{own['id']}/test", key=globex.key).json
    assert_problem(
        api.post(f"webhooks/events/{own_event['event_id']}/redeliver",
                 json={"endpoint_id": endpoint["id"]}, key=globex.key),
        404, "endpoint_not_found",
    )
    assert [e["id"] for e in api.get("webhooks/events", key=globex.key).json["items"]] == [
        own_event["event_id"]
    ]
    assert api.get("webhooks/deliveries", key=globex.key,
                   query={"endpoint_id": endpoint["id"]}).json["items"] == []
    assert api.get("webhooks/endpoints", key=globex.key).json["items"][0]["id"] == own["id"]
    assert Endpoint.objects.get(pk=endpoint["id"]).description == ""
