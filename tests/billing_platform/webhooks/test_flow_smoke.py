"""A billing event reaches a real local receiver, signed per Standard Webhooks."""

from __future__ import annotations

import json
from typing import Any

from standardwebhooks import Webhook

from billing_platform.webhooks.delivery import new_client
from billing_platform.webhooks.models import Delivery
from billing_platform.webhooks.worker import deliver_due
from tests.support.api import Api
from tests.support.servers import running_receiver
from tests.support.tenants import TenantFixture


def test_consume_event_is_delivered_and_verifies(
    api: Api, acme: TenantFixture, catalog: dict[str, Any], private_ok: None
) -> None:
    with running_receiver() as receiver:
        created = api.post(
            "webhooks/endpoints",
            json={"url": receiver.url, "event_types": ["quota.consumed"],
                  "headers": {"X-Hook-Token": "t0k"}},
            key=acme.key,
        )
        assert created.status == 201, created.body
        secret = created.json["secret"]
        assert created.json["headers"] == {"X-Hook-Token": "••••"}
        api.post("billing/grants", json={"external_id": "w1", "sku": "reports_10",
                                         "kind": "bonus"}, key=acme.key)
        consumed = api.post("billing/quota/consume", json={"external_id": "w1",
                                                           "feature": "reports"}, key=acme.key)
        assert consumed.status == 200
        with new_client() as client:
            assert deliver_due(client) == 1
        (request,) = receiver.wait_for(1)
        payload = Webhook(secret).verify(request.body, request.headers)
        assert payload["type"] == "quota.consumed"
        assert payload["tenant"] == "acme"
        assert payload["data"]["remaining"] == 9
        assert payload["data"]["customer"]["identities"] == [
            {"provider": "default", "external_id": "w1"}
        ]
        assert request.headers["x-hook-token"] == "t0k"
        assert request.headers["webhook-id"] == payload["id"]
        events = api.get("webhooks/events", key=acme.key).json["items"]
        assert json.loads(request.body) == {**events[0], "created_at": payload["created_at"]}
        delivery = Delivery.objects.get(event_id=payload["id"])
        assert delivery.status == "succeeded" and delivery.attempts == 1
