"""Posting deliveries to a real local receiver: body, signatures, retries, disabling, logs."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import timedelta
from email.utils import format_datetime
from typing import Any

from django.utils import timezone
from standardwebhooks import Webhook

from billing_platform.webhooks import services
from billing_platform.webhooks.models import Delivery, DeliveryAttempt, Endpoint, Event
from tests.support.api import Api
from tests.support.servers import Reply, running_receiver
from tests.support.tenants import TenantFixture
from tests.support.webhooks import create_endpoint, drain, grant_and_consume


def _signatures(secret: str, received: Any) -> list[str]:
    """Which of the space-separated v1 signatures match `secret` (own HMAC, not the package)."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = (
        f"{received.headers['webhook-id']}.{received.headers['webhook-timestamp']}.".encode()
        + received.body
    )
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    return [s for s in received.headers["webhook-signature"].split(" ") if s == f"v1,{expected}"]


def test_body_is_the_compact_event_object_with_unicode_kept(
    api: Api, acme: TenantFixture, catalog: dict[str, Any], private_ok: Any
) -> None:
    with running_receiver() as receiver:
        endpoint = create_endpoint(api, acme.key, receiver.url, event_types=["quota.consumed"])
        consumed = grant_and_consume(
            api, acme.key, external_id="Zoë-日本", metadata={"note": "naïve café ☕"}
        )
        assert consumed.status == 200
        drain()
        (received,) = receiver.wait_for(1)
    payload = Webhook(endpoint["secret"]).verify(received.body, received.headers)
    listed = api.get("webhooks/events", key=acme.key).json["items"]
    assert json.loads(received.body) == listed[0] == payload
    # compact, UTF-8, nothing escaped
    assert received.body == json.dumps(
        payload, separators=(",", ":"), ensure_ascii=False
    ).encode()
    assert "Zoë-日本".encode() in received.body and b"\\u" not in received.body
    assert received.headers["content-type"] == "application/json"
    assert received.headers["user-agent"].startswith("Billable-Webhooks/")
    assert received.headers["webhook-id"] == payload["id"]
    assert payload["data"]["metadata"] == {"note": "naïve café ☕"}


def test_failures_are_retried_until_the_receiver_recovers(
    api: Api, acme: TenantFixture, catalog: dict[str, Any], private_ok: Any
) -> None:
    with running_receiver() as receiver:
        endpoint = create_endpoint(api, acme.key, receiver.url)
        receiver.script = [500, Reply(502, body=b"bad gateway"), 500]
        for _ in range(3):
            api.post(f"webhooks/endpoints/{endpoint['id']}/test", key=acme.key)
        drain()
        requests = receiver.wait_for(6)
    delivered = {r.headers["webhook-id"] for r in requests}
    assert delivered == set(Event.objects.filter(tenant=acme.tenant).values_list("id", flat=True))
    assert len(delivered) == 3
    deliveries = Delivery.objects.filter(endpoint_id=endpoint["id"])
    assert {d.status for d in deliveries} == {"succeeded"}
    assert sum(d.attempts for d in deliveries) == 6
    codes = sorted(
        DeliveryAttempt.objects.filter(delivery__in=deliveries).values_list(
            "status_code", flat=True
        )
    )
    assert codes == [200, 200, 200, 500, 500, 502]
    assert DeliveryAttempt.objects.filter(status_code=502, response_body="bad gateway").exists()
    assert Endpoint.objects.get(pk=endpoint["id"]).consecutive_failures == 0


def test_the_same_webhook_id_is_sent_on_every_retry(
    api: Api, acme: TenantFixture, catalog: dict[str, Any], private_ok: Any
) -> None:
    with running_receiver() as receiver:
        endpoint = create_endpoint(api, acme.key, receiver.url)
        receiver.script = [500, 500]
        api.post(f"webhooks/endpoints/{endpoint['id']}/test", key=acme.key)
        drain()
        requests = receiver.wait_for(3)
    assert len({r.headers["webhook-id"] for r in requests}) == 1
    assert len({r.body for r in requests}) == 1
    for request in requests:
        Webhook(endpoint["secret"]).verify(request.body, request.headers)


def test_exhausted_schedule_marks_the_delivery_failed(
    api: Api, acme: TenantFixture, catalog: dict[str, Any], private_ok: Any
) -> None:
    with running_receiver() as receiver:
        receiver.default = Reply(500, body=b"down")
        endpoint = create_endpoint(api, acme.key, receiver.url)
        api.post(f"webhooks/endpoints/{endpoint['id']}/test", key=acme.key)
        drain()
        # the first attempt and one retry per schedule entry ([0, 0, 0])
        assert len(receiver.wait_for(4)) == 4
        drain()
        assert receiver.count() == 4
    (delivery,) = api.get("webhooks/deliveries", key=acme.key).json["items"]
    assert delivery["status"] == "failed"
    assert delivery["attempts"] == 4
    assert delivery["last_status_code"] == 500


def test_retry_after_is_honoured_and_capped(
    api: Api, acme: TenantFixture, catalog: dict[str, Any], private_ok: Any
) -> None:
    in_an_hour_and_more = format_datetime(timezone.now() + timedelta(hours=5), usegmt=True)
    with running_receiver() as receiver:
        endpoint = create_endpoint(api, acme.key, receiver.url)
        receiver.script = [
            Reply(429, headers={"Retry-After": "120"}),
            Reply(503, headers={"Retry-After": "999999"}),
            Reply(503, headers={"Retry-After": in_an_hour_and_more}),
        ]
        waits = []
        for _ in range(3):
            sent = api.post(f"webhooks/endpoints/{endpoint['id']}/test", key=acme.key)
            before = timezone.now()
            drain()
            delivery = Delivery.objects.get(event_id=sent.json["event_id"])
            assert delivery.status == "pending"
            assert delivery.next_attempt_at is not None
            waits.append((delivery.next_attempt_at - before).total_seconds())
    assert 119 <= waits[0] <= 125
    assert 3599 <= waits[1] <= 3605
    assert 3599 <= waits[2] <= 3605


def test_410_disables_the_endpoint_until_it_is_re_enabled(
    api: Api, acme: TenantFixture, catalog: dict[str, Any], private_ok: Any
) -> None:
    with running_receiver() as receiver:
        endpoint = create_endpoint(api, acme.key, receiver.url)
        receiver.script = [410]
        api.post(f"webhooks/endpoints/{endpoint['id']}/test", key=acme.key)
        drain()
        assert receiver.count() == 1
        shown = api.get(f"webhooks/endpoints/{endpoint['id']}", key=acme.key).json
        assert shown["is_active"] is False
        assert shown["disabled_at"] is not None
        assert "410" in shown["disabled_reason"]
        (delivery,) = Delivery.objects.filter(endpoint_id=endpoint["id"])
        assert delivery.status == "failed" and delivery.attempts == 1
        # a disabled endpoint gets nothing, and no event is even written
        events_before = Event.objects.count()
        assert grant_and_consume(api, acme.key).status == 200
        assert Event.objects.count() == events_before
        # re-enabled
        patched = api.patch(
            f"webhooks/endpoints/{endpoint['id']}", json={"is_active": True}, key=acme.key
        )
        assert patched.status == 200
        assert patched.json["is_active"] is True
        assert patched.json["disabled_at"] is None and patched.json["disabled_reason"] == ""
        api.post("billing/quota/consume", json={"external_id": "w1", "feature": "reports"},
                 key=acme.key)
        drain()
        assert receiver.count() == 2
        assert json.loads(receiver.requests[-1].body)["type"] == "quota.consumed"


def test_fifty_consecutive_failures_disable_the_endpoint(
    api: Api, acme: TenantFixture, catalog: dict[str, Any], private_ok: Any
) -> None:
    private_ok.WEBHOOK_RETRY_SCHEDULE = []  # every failure is final
    with running_receiver() as receiver:
        receiver.default = Reply(500)
        endpoint = create_endpoint(api, acme.key, receiver.url)
        row = Endpoint.objects.get(pk=endpoint["id"])
        for _ in range(49):
            services.endpoint_test(endpoint=row)
        drain(rounds=5)
        row.refresh_from_db()
        assert row.is_active and row.consecutive_failures == 49
        services.endpoint_test(endpoint=row)
        drain()
        assert receiver.count() == 50
    shown = api.get(f"webhooks/endpoints/{endpoint['id']}", key=acme.key).json
    assert shown["is_active"] is False
    assert shown["disabled_reason"] == "50 consecutive failed deliveries."


def test_a_success_resets_the_failure_count(
    api: Api, acme: TenantFixture, catalog: dict[str, Any], private_ok: Any
) -> None:
    private_ok.WEBHOOK_RETRY_SCHEDULE = []
    with running_receiver() as receiver:
        receiver.script = [500] * 30
        endpoint = create_endpoint(api, acme.key, receiver.url)
        row = Endpoint.objects.get(pk=endpoint["id"])
        for _ in range(31):
            services.endpoint_test(endpoint=row)
        drain(rounds=5)
        receiver.script = [500] * 30
        for _ in range(30):
            services.endpoint_test(endpoint=row)
        drain(rounds=5)
    row.refresh_from_db()
    assert row.is_active and row.consecutive_failures == 30


def test_five_days_of_failures_disable_the_endpoint(
    api: Api, acme: TenantFixture, catalog: dict[str, Any], private_ok: Any
) -> None:
    with running_receiver() as receiver:
        receiver.default = Reply(500)
        endpoint = create_endpoint(api, acme.key, receiver.url)
        Endpoint.objects.filter(pk=endpoint["id"]).update(
            consecutive_failures=3, failing_since=timezone.now() - timedelta(days=5, minutes=1)
        )
        api.post(f"webhooks/endpoints/{endpoint['id']}/test", key=acme.key)
        drain(rounds=1)
    shown = api.get(f"webhooks/endpoints/{endpoint['id']}", key=acme.key).json
    assert shown["is_active"] is False and "5 days" in shown["disabled_reason"]


def test_attempt_log_keeps_the_first_4_kib_of_the_response(
    api: Api, acme: TenantFixture, catalog: dict[str, Any], private_ok: Any
) -> None:
    with running_receiver() as receiver:
        receiver.script = [Reply(500, body=b"x" * 10_000 + b"\x00tail"), Reply(200, body=b"ok\x00")]
        endpoint = create_endpoint(api, acme.key, receiver.url)
        api.post(f"webhooks/endpoints/{endpoint['id']}/test", key=acme.key)
        drain()
    failed, succeeded = DeliveryAttempt.objects.filter(
        delivery__endpoint_id=endpoint["id"]
    ).order_by("attempted_at")
    assert failed.status_code == 500 and failed.response_body == "x" * 4096
    assert failed.duration_ms >= 0 and failed.error == ""
    assert succeeded.status_code == 200 and succeeded.response_body == "ok\ufffd"


def test_rotation_sends_both_signatures_for_24_hours(
    api: Api, acme: TenantFixture, catalog: dict[str, Any], private_ok: Any
) -> None:
    with running_receiver() as receiver:
        endpoint = create_endpoint(api, acme.key, receiver.url)
        old = endpoint["secret"]
        rotated = api.post(f"webhooks/endpoints/{endpoint['id']}/rotate-secret", key=acme.key)
        assert rotated.status == 200
        new = rotated.json["secret"]
        assert new.startswith("whsec_") and new != old
        api.post(f"webhooks/endpoints/{endpoint['id']}/test", key=acme.key)
        drain()
        (first,) = receiver.wait_for(1)
        assert len(first.headers["webhook-signature"].split(" ")) == 2
        assert len(_signatures(new, first)) == 1 and len(_signatures(old, first)) == 1
        Webhook(new).verify(first.body, first.headers)
        Webhook(old).verify(first.body, first.headers)
        # after 24 hours only the new secret signs
        Endpoint.objects.filter(pk=endpoint["id"]).update(
            previous_secret_expires_at=timezone.now() - timedelta(seconds=1)
        )
        api.post(f"webhooks/endpoints/{endpoint['id']}/test", key=acme.key)
        drain()
        second = receiver.wait_for(2)[1]
    assert len(second.headers["webhook-signature"].split(" ")) == 1
    assert len(_signatures(new, second)) == 1 and _signatures(old, second) == []


def test_custom_headers_are_sent_and_reserved_ones_refused(
    api: Api, acme: TenantFixture, catalog: dict[str, Any], private_ok: Any
) -> None:
    with running_receiver() as receiver:
        endpoint = create_endpoint(
            api, acme.key, receiver.url, headers={"Authorization": "Bearer n8n-token"}
        )
        refused = api.post(
            "webhooks/endpoints",
            json={"url": receiver.url, "headers": {"Webhook-Signature": "forged"}},
            key=acme.key,
        )
        assert refused.status == 422
        api.post(f"webhooks/endpoints/{endpoint['id']}/test", key=acme.key)
        drain()
        (received,) = receiver.wait_for(1)
    assert received.headers["authorization"] == "Bearer n8n-token"


def test_a_receiver_that_drags_its_answer_is_cut_off_at_the_timeout(
    api: Api, acme: TenantFixture, catalog: dict[str, Any], private_ok: Any
) -> None:
    # private_ok sets WEBHOOK_TIMEOUT_SECONDS = 2: each byte arrives in time, the whole does not
    slow = Reply(status=200, body=b'{"ok": true, "padding": "................"}', trickle=0.3)
    with running_receiver() as receiver:
        receiver.default = slow
        endpoint = create_endpoint(api, acme.key, receiver.url)
        api.post(f"webhooks/endpoints/{endpoint['id']}/test", key=acme.key)
        drain(rounds=1)
        receiver.wait_for(1)
    delivery = Delivery.objects.get(endpoint_id=endpoint["id"])
    (attempt,) = DeliveryAttempt.objects.filter(delivery=delivery)
    assert attempt.status_code is None and attempt.error.startswith("timeout")
    assert delivery.status == "pending" and delivery.last_error.startswith("timeout")


def test_headers_that_would_not_travel_unchanged_are_refused(
    api: Api, acme: TenantFixture, private_ok: Any
) -> None:
    for headers in ({"X-Token": "café"}, {"X-Token": "two\nlines"}, {"X-Token": ""},
                    {"Keep-Alive": "timeout=5"}, {"Accept-Encoding": "gzip"}):
        refused = api.post("webhooks/endpoints",
                           json={"url": "http://127.0.0.1:9/hook", "headers": headers},
                           key=acme.key)
        assert refused.status == 422, (headers, refused.body)


def test_answers_are_asked_for_uncompressed(
    api: Api, acme: TenantFixture, catalog: dict[str, Any], private_ok: Any
) -> None:
    with running_receiver() as receiver:
        endpoint = create_endpoint(api, acme.key, receiver.url)
        api.post(f"webhooks/endpoints/{endpoint['id']}/test", key=acme.key)
        drain()
        (received,) = receiver.wait_for(1)
    assert received.headers["accept-encoding"] == "identity"


def test_one_connection_is_never_shared_by_two_host_names(private_ok: Any) -> None:
    # `localhost` and `127.0.0.1` reach the same address: a pool keyed by address would post to
    # the second name over the first name's connection (and, over TLS, its verified identity).
    from billing_platform.webhooks.delivery import new_client, post

    with running_receiver() as receiver, new_client() as clients:
        by_name = receiver.url.replace("127.0.0.1", "localhost")
        for url in (receiver.url, by_name, receiver.url, by_name):
            assert post(clients, url, "{}", {}).ok
        received = receiver.wait_for(4)
    peers: dict[str, set[tuple[str, int]]] = {}
    for request in received:
        peers.setdefault(request.headers["host"].split(":")[0], set()).add(request.peer)
    assert set(peers) == {"127.0.0.1", "localhost"}
    assert len(peers["127.0.0.1"]) == 1 and len(peers["localhost"]) == 1  # each name reuses
    assert not peers["127.0.0.1"] & peers["localhost"]


def test_a_result_that_outlived_its_lease_is_not_recorded(
    api: Api, acme: TenantFixture, catalog: dict[str, Any], private_ok: Any
) -> None:
    from billing_platform.webhooks import worker
    from billing_platform.webhooks.delivery import new_client

    with running_receiver() as receiver:
        endpoint = create_endpoint(api, acme.key, receiver.url)
        api.post(f"webhooks/endpoints/{endpoint['id']}/test", key=acme.key)
        (claimed,) = [c for c in worker.claim(50) if c.endpoint_id == endpoint["id"]]
        ours = Delivery.objects.get(pk=claimed.id)
        # The post outlives the lease; another worker claims the delivery again meanwhile.
        Delivery.objects.filter(pk=ours.pk).update(
            locked_until=timezone.now() + timedelta(seconds=90), attempts=ours.attempts + 1
        )
        with new_client() as clients:
            result = worker.attempt(claimed, clients)
        assert worker.record_results([result]) == 0
        receiver.wait_for(1)
    assert result.outcome is not None and result.outcome.ok
    assert not DeliveryAttempt.objects.filter(delivery=ours).exists()
    after = Delivery.objects.get(pk=ours.pk)
    assert after.status == "pending" and after.attempts == ours.attempts + 1
