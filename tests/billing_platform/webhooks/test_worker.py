"""Real worker processes over committed data: kills, graceful stops, concurrency, recovery."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from billing_platform.webhooks.models import Delivery, DeliveryAttempt
from tests.support.api import Api
from tests.support.billing import reports_catalog
from tests.support.processes import wait_until, webhook_worker
from tests.support.servers import Reply, running_receiver
from tests.support.tenants import TenantFixture, fresh_tenant


def test_the_module_runs_on_the_test_database(db: None) -> None:
    """Makes pytest-django set up the test database before the committed tests below."""
    from django.db import connection

    assert str(connection.settings_dict["NAME"]).startswith("test_")


@pytest.fixture
def tenant(committed: None, settings: Any) -> Iterator[TenantFixture]:
    settings.WEBHOOKS_ALLOW_PRIVATE_NETWORKS = True
    with fresh_tenant("wh") as fresh:
        reports_catalog(fresh.tenant, units=1000)
        yield fresh


def _endpoint(api: Api, tenant: TenantFixture, url: str) -> str:
    response = api.post("webhooks/endpoints", json={"url": url}, key=tenant.key)
    assert response.status == 201, response.body
    return str(response.json["id"])


def _test_events(api: Api, tenant: TenantFixture, endpoint_id: str, count: int) -> list[str]:
    ids = []
    for _ in range(count):
        response = api.post(f"webhooks/endpoints/{endpoint_id}/test", key=tenant.key)
        assert response.status == 202
        ids.append(response.json["event_id"])
    return ids


def _statuses(endpoint_id: str) -> list[str]:
    return sorted(Delivery.objects.filter(endpoint_id=endpoint_id).values_list("status", flat=True))


def test_a_killed_worker_loses_nothing(api: Api, tenant: TenantFixture) -> None:
    with running_receiver() as receiver:
        receiver.script = [Reply(200, delay=4.0)]  # the first post hangs while the worker dies
        endpoint_id = _endpoint(api, tenant, receiver.url)
        with webhook_worker(lease_seconds=2) as first:
            event_ids = _test_events(api, tenant, endpoint_id, 5)
            receiver.wait_for(5)
            # the four quick answers are recorded; the hanging one is in flight
            wait_until(lambda: _statuses(endpoint_id).count("succeeded") == 4)
            first.kill()
        hung = receiver.requests[0].headers["webhook-id"]
        assert Delivery.objects.get(event_id=hung).status == "pending"
        with webhook_worker(lease_seconds=2):
            wait_until(lambda: _statuses(endpoint_id) == ["succeeded"] * 5, timeout=20,
                       message=str(_statuses(endpoint_id)))
        requests = receiver.requests
    assert {r.headers["webhook-id"] for r in requests} == set(event_ids)
    assert [r.headers["webhook-id"] for r in requests].count(hung) == 2
    assert Delivery.objects.get(event_id=hung).attempts == 2
    assert sum(Delivery.objects.filter(endpoint_id=endpoint_id).values_list(
        "attempts", flat=True)) == 6


def test_sigterm_finishes_the_post_in_flight(api: Api, tenant: TenantFixture) -> None:
    with running_receiver() as receiver:
        receiver.script = [Reply(200, delay=2.0)]
        endpoint_id = _endpoint(api, tenant, receiver.url)
        with webhook_worker(lease_seconds=30) as worker:
            (event_id,) = _test_events(api, tenant, endpoint_id, 1)
            receiver.wait_for(1)
            started = time.monotonic()
            assert worker.terminate() == 0
            assert time.monotonic() - started >= 1.0  # it waited for the answer
            assert "webhook worker stopped" in worker.log()
    delivery = Delivery.objects.get(event_id=event_id)
    assert delivery.status == "succeeded" and delivery.attempts == 1
    assert delivery.locked_until is None


def test_one_worker_posts_concurrently(api: Api, tenant: TenantFixture) -> None:
    with running_receiver() as receiver:
        receiver.default = Reply(200, delay=1.0)
        endpoint_id = _endpoint(api, tenant, receiver.url)
        with webhook_worker(threads=8):
            _test_events(api, tenant, endpoint_id, 8)
            started = time.monotonic()
            wait_until(lambda: _statuses(endpoint_id) == ["succeeded"] * 8, timeout=20)
            elapsed = time.monotonic() - started
        arrivals = sorted(r.received_at for r in receiver.requests)
    assert len(arrivals) == 8
    assert arrivals[-1] - arrivals[0] < 0.9, arrivals  # one after the other would take 7 s
    assert elapsed < 4.0


def test_receiver_outage_then_recovery_delivers_everything(
    api: Api, tenant: TenantFixture
) -> None:
    with running_receiver() as receiver:
        receiver.script = [500] * 7
        endpoint_id = _endpoint(api, tenant, receiver.url)
        with webhook_worker(schedule="0,0,0,0"):
            grant = api.post("billing/grants", json={"external_id": "r1", "sku": "reports_1000",
                                                     "kind": "bonus"}, key=tenant.key)
            assert grant.status == 201
            for _ in range(4):
                consumed = api.post("billing/quota/consume",
                                    json={"external_id": "r1", "feature": "reports"},
                                    key=tenant.key)
                assert consumed.status == 200
            wait_until(lambda: _statuses(endpoint_id) == ["succeeded"] * 6, timeout=20,
                       message=str(_statuses(endpoint_id)))
        delivered = {r.headers["webhook-id"]: json.loads(r.body)["type"]
                     for r in receiver.requests}
    assert sorted(delivered.values()) == (
        ["customer.created", "grant.created"] + ["quota.consumed"] * 4
    )
    assert len(receiver.requests) == 6 + 7


def test_a_sleeping_worker_is_woken_by_notify(api: Api, tenant: TenantFixture) -> None:
    with running_receiver() as receiver:
        endpoint_id = _endpoint(api, tenant, receiver.url)
        with webhook_worker(poll=30):  # without a notification it would look again in 30 s
            time.sleep(0.5)  # past the look at start: asleep on LISTEN now
            _test_events(api, tenant, endpoint_id, 1)
            answered = time.time()
            (request,) = receiver.wait_for(1, timeout=10)
    assert request.received_at - answered < 2.0


def test_a_backlog_is_drained_in_batches_by_one_worker(api: Api, tenant: TenantFixture) -> None:
    with running_receiver() as receiver:
        endpoint_id = _endpoint(api, tenant, receiver.url)
        event_ids = _test_events(api, tenant, endpoint_id, 60)  # queued while no worker runs
        with webhook_worker(threads=4):
            wait_until(lambda: _statuses(endpoint_id) == ["succeeded"] * 60, timeout=30,
                       message=str(_statuses(endpoint_id)))
        requests = receiver.requests
    assert sorted(r.headers["webhook-id"] for r in requests) == sorted(event_ids)
    attempts = DeliveryAttempt.objects.filter(delivery__endpoint_id=endpoint_id)
    assert attempts.count() == 60 and {a.status_code for a in attempts} == {200}
    assert not Delivery.objects.filter(endpoint_id=endpoint_id, locked_until__isnull=False)
