"""The webhooks admin: secrets never shown, deliveries filtered by status, Redeliver."""

from __future__ import annotations

from typing import Any

from django.contrib.admin.models import LogEntry
from django.contrib.admin.utils import quote
from django.test import Client

from billing_platform.webhooks.models import Delivery, DeliveryAttempt, Endpoint, Event
from tests.support.admin import offered_actions, staff_client
from tests.support.api import Api
from tests.support.servers import running_receiver
from tests.support.tenants import TenantFixture
from tests.support.webhooks import create_endpoint, drain


def test_endpoints_are_listed_without_secrets(
    api: Api, acme: TenantFixture, operator: Client, private_ok: Any
) -> None:
    endpoint = create_endpoint(api, acme.key, "http://127.0.0.1:9/hook",
                               headers={"X-Token": "header-secret-value"})
    listing = operator.get("/admin/webhooks/endpoint/")
    assert listing.status_code == 200
    page = listing.content.decode()
    assert "http://127.0.0.1:9/hook" in page and "X-Token: ••••" in page
    detail = operator.get(f"/admin/webhooks/endpoint/{endpoint['id']}/change/").content.decode()
    for page in (listing.content.decode(), detail):
        assert endpoint["secret"] not in page
        assert endpoint["secret"].removeprefix("whsec_") not in page
        assert "header-secret-value" not in page
    assert operator.get("/admin/webhooks/endpoint/add/").status_code == 403


def test_deliveries_filter_by_status_and_redeliver(
    api: Api, acme: TenantFixture, operator: Client, private_ok: Any
) -> None:
    private_ok.WEBHOOK_RETRY_SCHEDULE = []
    with running_receiver() as receiver:
        endpoint = create_endpoint(api, acme.key, receiver.url)
        receiver.script = [500]
        failed_event = api.post(f"webhooks/endpoints/{endpoint['id']}/test", key=acme.key).json
        drain()
        ok_event = api.post(f"webhooks/endpoints/{endpoint['id']}/test", key=acme.key).json
        drain()
        failed = Delivery.objects.get(event_id=failed_event["event_id"])
        succeeded = Delivery.objects.get(event_id=ok_event["event_id"])
        assert (failed.status, succeeded.status) == ("failed", "succeeded")

        page = operator.get("/admin/webhooks/delivery/", {"status__exact": "failed"})
        assert page.status_code == 200
        shown = [str(d.pk) for d in page.context["cl"].result_list]
        assert shown == [str(failed.pk)]
        detail = operator.get(f"/admin/webhooks/delivery/{failed.pk}/change/")
        assert detail.status_code == 200 and b"500" in detail.content

        response = operator.post("/admin/webhooks/delivery/", {
            "action": "redeliver", "_selected_action": [str(failed.pk), str(succeeded.pk)],
            "index": "0",
        })
        assert response.status_code == 302
        assert Delivery.objects.filter(endpoint_id=endpoint["id"], status="pending").count() == 2
        drain()
        assert receiver.count() == 4
    ids = [r.headers["webhook-id"] for r in receiver.requests[2:]]
    assert sorted(ids) == sorted([failed_event["event_id"], ok_event["event_id"]])


def test_events_admin_redelivers_to_every_subscriber(
    api: Api, acme: TenantFixture, operator: Client, private_ok: Any
) -> None:
    first = create_endpoint(api, acme.key, "http://127.0.0.1:9/a")
    create_endpoint(api, acme.key, "http://127.0.0.1:9/b")
    sent = api.post(f"webhooks/endpoints/{first['id']}/test", key=acme.key).json
    event = Event.objects.get(pk=sent["event_id"])
    assert operator.get("/admin/webhooks/event/").status_code == 200
    # The admin quotes primary keys in its URLs ("evt_2f…" would otherwise read as "evt/…").
    assert operator.get(f"/admin/webhooks/event/{quote(event.pk)}/change/").status_code == 200
    operator.post("/admin/webhooks/event/", {
        "action": "redeliver", "_selected_action": [event.pk], "index": "0"})
    assert Delivery.objects.filter(event=event).count() == 3


def test_redeliver_needs_the_change_permission(
    api: Api, acme: TenantFixture, private_ok: Any
) -> None:
    endpoint = create_endpoint(api, acme.key, "http://127.0.0.1:9/view-only")
    sent = api.post(f"webhooks/endpoints/{endpoint['id']}/test", key=acme.key).json
    event = Event.objects.get(pk=sent["event_id"])
    delivery = Delivery.objects.get(event=event)
    viewer = staff_client("viewer", "view_event", "view_delivery")

    # A view-only operator sees both lists but is offered no Redeliver, and posting it does nothing.
    assert offered_actions(viewer, "/admin/webhooks/event/") == set()
    assert offered_actions(viewer, "/admin/webhooks/delivery/") == set()
    viewer.post("/admin/webhooks/event/", {
        "action": "redeliver", "_selected_action": [event.pk], "index": "0"})
    viewer.post("/admin/webhooks/delivery/", {
        "action": "redeliver", "_selected_action": [str(delivery.pk)], "index": "0"})
    assert Delivery.objects.filter(event=event).count() == 1

    # The change permission of the model is what allows it.
    changer = staff_client(
        "changer", "view_event", "change_event", "view_delivery", "change_delivery"
    )
    assert offered_actions(changer, "/admin/webhooks/event/") == {"redeliver"}
    assert offered_actions(changer, "/admin/webhooks/delivery/") == {"redeliver"}
    changer.post("/admin/webhooks/delivery/", {
        "action": "redeliver", "_selected_action": [str(delivery.pk)], "index": "0"})
    assert Delivery.objects.filter(event=event).count() == 2
    # Still nothing to edit by hand: the rows stay read-only for every operator.
    page = changer.get(f"/admin/webhooks/delivery/{delivery.pk}/change/").content.decode()
    assert 'name="_save"' not in page


def test_webhook_models_are_named_in_words(
    api: Api, acme: TenantFixture, operator: Client, private_ok: Any
) -> None:
    endpoint = create_endpoint(api, acme.key, "http://127.0.0.1:9/named")
    sent = api.post(f"webhooks/endpoints/{endpoint['id']}/test", key=acme.key).json
    delivery = Delivery.objects.get(event_id=sent["event_id"])

    index = operator.get("/admin/").content.decode()
    for label in ("Webhook endpoints", "Webhook events", "Webhook deliveries"):
        assert f">{label}<" in index, label
    assert "Deliverys" not in index
    assert str(delivery) == "webhook.test to http://127.0.0.1:9/named: pending"
    page = operator.get(f"/admin/webhooks/delivery/{delivery.pk}/change/").content.decode()
    assert "webhook.test to http://127.0.0.1:9/named: pending" in page
    assert "Delivery object" not in page
    attempt = DeliveryAttempt.objects.create(
        delivery=delivery, status_code=502, error="", request_url="http://127.0.0.1:9/named",
        request_headers={"webhook-id": delivery.event_id}, response_headers=[["X-Gate", "shut"]],
    )
    assert str(attempt).endswith("UTC: HTTP 502")
    # The attempt's request and answer headers are shown under the delivery.
    page = operator.get(f"/admin/webhooks/delivery/{delivery.pk}/change/").content.decode()
    assert delivery.event_id in page and "X-Gate" in page and "shut" in page
    failed = DeliveryAttempt(delivery=delivery, error="connection refused")
    assert str(failed) == "not yet: connection refused"


def test_disabling_an_endpoint_stops_its_deliveries(
    api: Api, acme: TenantFixture, operator: Client, private_ok: Any
) -> None:
    with running_receiver() as receiver:
        endpoint = create_endpoint(api, acme.key, receiver.url)
        pending = api.post(f"webhooks/endpoints/{endpoint['id']}/test", key=acme.key).json

        response = operator.post("/admin/webhooks/endpoint/", {
            "action": "disable_endpoints", "_selected_action": [endpoint["id"]], "index": "0",
        })

        assert response.status_code == 302
        assert api.get(f"webhooks/endpoints/{endpoint['id']}", key=acme.key).json[
            "is_active"] is False
        # The delivery queued before is not posted; a new event is not even queued.
        drain()
        assert receiver.count() == 0
        assert Delivery.objects.get(event_id=pending["event_id"]).status == "failed"
        again = api.post(f"webhooks/endpoints/{endpoint['id']}/test", key=acme.key).json
        assert again["queued"] == 0
        assert not Delivery.objects.filter(endpoint_id=endpoint["id"], status="pending").exists()
        entry = LogEntry.objects.get(object_id=endpoint["id"])
        assert entry.get_change_message() == "Changed is_active."

        operator.post("/admin/webhooks/endpoint/", {
            "action": "enable_endpoints", "_selected_action": [endpoint["id"]], "index": "0",
        })

        assert api.get(f"webhooks/endpoints/{endpoint['id']}", key=acme.key).json[
            "is_active"] is True
        api.post(f"webhooks/endpoints/{endpoint['id']}/test", key=acme.key)
        drain()
        assert receiver.count() == 1


def test_disabling_needs_the_change_permission(
    api: Api, acme: TenantFixture, private_ok: Any
) -> None:
    endpoint = create_endpoint(api, acme.key, "http://127.0.0.1:9/kept")
    viewer = staff_client("endpoint-viewer", "view_endpoint")
    assert offered_actions(viewer, "/admin/webhooks/endpoint/") == set()
    viewer.post("/admin/webhooks/endpoint/", {
        "action": "disable_endpoints", "_selected_action": [endpoint["id"]], "index": "0"})
    assert Endpoint.objects.get(pk=endpoint["id"]).is_active
    changer = staff_client("endpoint-changer", "view_endpoint", "change_endpoint")
    assert offered_actions(changer, "/admin/webhooks/endpoint/") == {
        "disable_endpoints", "enable_endpoints"}
