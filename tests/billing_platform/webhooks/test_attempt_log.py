"""Each attempt logs the request as sent (custom header values masked) and the answer's headers,
through the worker's one recording statement."""

from __future__ import annotations

from typing import Any

from billing_platform.webhooks import services
from billing_platform.webhooks.models import DeliveryAttempt
from billing_platform.webhooks.worker import MASKED
from tests.support.servers import Reply, running_receiver
from tests.support.tenants import TenantFixture
from tests.support.webhooks import drain


def test_an_attempt_keeps_the_request_and_the_answers_headers(
    acme: TenantFixture, private_ok: Any
) -> None:
    with running_receiver() as receiver:
        endpoint, _secret = services.endpoint_create(
            tenant_id=acme.tenant.pk, url=receiver.url + "?from=billable",
            headers={"X-Hook-Token": "never-logged-in-clear"},
        )
        receiver.script = [Reply(status=429, headers={"Retry-After": "0", "X-Answer": "later"},
                                 body=b"slow down")]
        event = services.endpoint_test(endpoint=endpoint)
        drain()
        first, second = receiver.wait_for(2)

    refused, taken = DeliveryAttempt.objects.filter(delivery__event=event).order_by("id")
    assert refused.request_url == taken.request_url == receiver.url + "?from=billable"
    sent = refused.request_headers
    assert sent["X-Hook-Token"] == MASKED
    assert first.headers["x-hook-token"] == "never-logged-in-clear"  # the receiver got it
    for name in ("webhook-id", "webhook-timestamp", "webhook-signature", "User-Agent",
                 "Content-Type"):
        assert sent[name] == first.headers[name.lower()], name
    assert sent["Content-Length"] == str(len(first.body))
    assert taken.request_headers["webhook-id"] == second.headers["webhook-id"] == event.pk
    assert refused.status_code == 429 and refused.response_body == "slow down"
    assert ["X-Answer", "later"] in refused.response_headers
    assert ["Retry-After", "0"] in refused.response_headers
    assert taken.status_code == 200 and ["Content-Type", "application/json"] in (
        taken.response_headers
    )
    assert "never-logged-in-clear" not in str(
        list(DeliveryAttempt.objects.values_list("request_headers", "response_headers"))
    )


def test_an_attempt_refused_before_sending_logs_no_request(
    acme: TenantFixture, private_ok: Any
) -> None:
    endpoint, _secret = services.endpoint_create(
        tenant_id=acme.tenant.pk, url="http://127.0.0.1:9/hook"
    )
    event = services.endpoint_test(endpoint=endpoint)
    private_ok.WEBHOOKS_ALLOW_PRIVATE_NETWORKS = False  # the delivery's own check refuses it
    drain(rounds=1)

    (attempt,) = DeliveryAttempt.objects.filter(delivery__event=event)
    assert attempt.error.startswith("refused:") and attempt.status_code is None
    assert attempt.request_url == "http://127.0.0.1:9/hook"
    assert attempt.request_headers == {} and attempt.response_headers == []
