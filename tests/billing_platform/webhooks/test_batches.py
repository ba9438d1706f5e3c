"""Claims and results in batches: one statement each, every outcome recorded, nothing lost."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection, connections
from django.utils import timezone
from prometheus_client import REGISTRY
from standardwebhooks import Webhook

from billing_platform.webhooks import worker
from billing_platform.webhooks.delivery import Outcome, new_client
from billing_platform.webhooks.models import Delivery, DeliveryAttempt, Endpoint
from tests.support.api import Api
from tests.support.servers import Reply, running_receiver
from tests.support.tenants import TenantFixture, fresh_tenant
from tests.support.webhooks import create_endpoint, drain


def _send_tests(api: Api, key: str, endpoint_id: str, count: int) -> list[str]:
    events = []
    for _ in range(count):
        response = api.post(f"webhooks/endpoints/{endpoint_id}/test", key=key)
        assert response.status == 202, response.body
        events.append(response.json["event_id"])
    return events


@contextmanager
def statements() -> Iterator[list[str]]:
    """The SQL of every statement this thread's connection runs inside the block."""
    seen: list[str] = []

    def note(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        seen.append(sql)
        return execute(sql, params, many, context)

    with connection.execute_wrapper(note):
        yield seen


def _touching_webhooks(seen: list[str]) -> list[str]:
    return [sql for sql in seen if "webhooks_" in sql]


def _deliveries_total(outcome: str) -> float:
    value = REGISTRY.get_sample_value("billable_webhook_deliveries_total", {"outcome": outcome})
    return value or 0.0


def test_a_batch_is_claimed_in_one_statement_after_reading_the_time(
    api: Api, acme: TenantFixture, private_ok: Any
) -> None:
    with running_receiver() as receiver:
        endpoint = create_endpoint(api, acme.key, receiver.url, headers={"X-Token": "t0k"})
        events = _send_tests(api, acme.key, endpoint["id"], 5)
        # when
        with statements() as claiming:
            claimed = worker.claim(50)
        ours = [c for c in claimed if c.endpoint_id == endpoint["id"]]
        with new_client() as clients:
            results = [worker.attempt(c, clients) for c in ours]
        with statements() as recording:
            assert worker.record_results(results) == 5
        received = receiver.wait_for(5)
    # then: the database's time and one statement to claim, one to record, and the posts
    # needed no other read
    assert claiming[0] == "SELECT clock_timestamp()" and len(claiming) == 2
    assert "clock_timestamp" not in claiming[1]  # Citus refuses a volatile call in an UPDATE
    assert len(recording) == 1
    assert {c.event.pk for c in ours} == set(events)
    assert all(c.attempts == 1 and c.lease is not None for c in ours)
    for request in received:
        assert Webhook(endpoint["secret"]).verify(request.body, request.headers)["tenant"] == "acme"
        assert request.headers["x-token"] == "t0k"
    deliveries = Delivery.objects.filter(endpoint_id=endpoint["id"])
    assert {(d.status, d.attempts, d.locked_until) for d in deliveries} == {("succeeded", 1, None)}
    assert DeliveryAttempt.objects.filter(delivery__in=deliveries, status_code=200).count() == 5


def test_a_mixed_batch_is_recorded_in_one_statement(
    api: Api, acme: TenantFixture, private_ok: Any
) -> None:
    # given: four deliveries to a receiver that answers 200, 500, too late (the timeout is 2 s)
    # and 503 with Retry-After; one to an endpoint disabled since; one to a receiver that is gone
    private_ok.WEBHOOK_RETRY_SCHEDULE = [30, 30, 30]
    with running_receiver() as receiver, running_receiver() as gone_receiver:
        receiver.script = [200, 500, Reply(200, delay=3.0),
                           Reply(503, headers={"Retry-After": "120"}, body=b"busy")]
        gone_receiver.default = Reply(410)
        mixed = create_endpoint(api, acme.key, receiver.url)
        disabled = create_endpoint(api, acme.key, receiver.url)
        gone = create_endpoint(api, acme.key, gone_receiver.url)
        _send_tests(api, acme.key, mixed["id"], 4)
        (disabled_event,) = _send_tests(api, acme.key, disabled["id"], 1)
        _send_tests(api, acme.key, gone["id"], 1)
        patched = api.patch(f"webhooks/endpoints/{disabled['id']}", json={"is_active": False},
                            key=acme.key)
        assert patched.status == 200
        ids = {mixed["id"], disabled["id"], gone["id"]}
        claimed = [c for c in worker.claim(50) if c.endpoint_id in ids]
        assert len(claimed) == 6
        with new_client() as clients:
            results = [worker.attempt(c, clients) for c in claimed]
        before = {name: _deliveries_total(name) for name in ("succeeded", "retrying", "gone")}
        # when
        started = timezone.now()
        with statements() as recording:
            assert worker.record_results(results) == 6
        answered = [r.headers["webhook-id"] for r in receiver.wait_for(4)]
    # then: one statement wrote every delivery and attempt
    assert len(_touching_webhooks(recording)) == 1
    by_event = {d.event_id: d for d in Delivery.objects.filter(endpoint_id__in=ids)}
    ok, failed, late, busy = (by_event[event_id] for event_id in answered)
    assert (ok.status, ok.last_status_code, ok.last_error) == ("succeeded", 200, "")
    assert (failed.status, failed.last_status_code) == ("pending", 500)
    assert (late.status, late.last_status_code) == ("pending", None)
    assert late.last_error == "timeout: no complete answer within 2 s"
    assert (busy.status, busy.last_status_code) == ("pending", 503)
    for retried, wait in ((failed, 30), (late, 30), (busy, 120)):
        assert retried.next_attempt_at is not None and retried.locked_until is None
        seconds = (retried.next_attempt_at - started).total_seconds()
        assert wait * 0.9 - 1 <= seconds <= wait * 1.1 + 1, (retried.last_status_code, seconds)
    attempts = DeliveryAttempt.objects.filter(delivery__endpoint_id__in=ids)
    logged = {attempt.delivery_id: attempt for attempt in attempts}
    assert logged[busy.pk].response_body == "busy" and logged[late.pk].error.startswith("timeout")
    assert logged[ok.pk].duration_ms >= 0 and logged[late.pk].duration_ms >= 2000
    # the delivery to the endpoint disabled since is not posted and not logged as an attempt
    skipped = by_event[disabled_event]
    assert (skipped.status, skipped.last_error, skipped.locked_until) == (
        "failed", "endpoint disabled", None)
    assert skipped.pk not in logged
    assert len(logged) == 5
    # the 410 fails its delivery at once and disables its endpoint
    (gone_delivery,) = Delivery.objects.filter(endpoint_id=gone["id"])
    assert (gone_delivery.status, gone_delivery.last_status_code) == ("failed", 410)
    gone_row = Endpoint.objects.get(pk=gone["id"])
    assert not gone_row.is_active and "410" in gone_row.disabled_reason
    # the endpoint's health follows its answers in order: one success, then three failures
    mixed_row = Endpoint.objects.get(pk=mixed["id"])
    assert mixed_row.is_active and mixed_row.consecutive_failures == 3
    assert mixed_row.failing_since is not None
    # the metrics count each recorded attempt once
    assert _deliveries_total("succeeded") - before["succeeded"] == 1
    assert _deliveries_total("retrying") - before["retrying"] == 3
    assert _deliveries_total("gone") - before["gone"] == 1


def test_a_crash_between_claim_and_record_loses_nothing(
    api: Api, acme: TenantFixture, private_ok: Any
) -> None:
    private_ok.WEBHOOK_LEASE_SECONDS = 1
    with running_receiver() as receiver:
        endpoint = create_endpoint(api, acme.key, receiver.url)
        events = _send_tests(api, acme.key, endpoint["id"], 3)
        # given: a worker claimed and posted a batch, then died before recording it
        claimed = [c for c in worker.claim(50) if c.endpoint_id == endpoint["id"]]
        with new_client() as clients:
            for item in claimed:
                assert worker.attempt(item, clients).outcome is not None
        receiver.wait_for(3)
        # while the leases hold, nobody takes the deliveries again
        drain()
        assert receiver.count() == 3
        # when: the leases run out
        time.sleep(1.2)
        drain()
        requests = receiver.wait_for(6)
    # then: each event was posted again with the same webhook-id, and is recorded now
    ids = [r.headers["webhook-id"] for r in requests]
    assert sorted(ids) == sorted(events * 2)
    deliveries = Delivery.objects.filter(endpoint_id=endpoint["id"])
    assert {(d.status, d.attempts, d.locked_until) for d in deliveries} == {("succeeded", 2, None)}
    # only the recorded attempt is in the log: the dead worker's never reached the database
    assert DeliveryAttempt.objects.filter(delivery__in=deliveries).count() == 3


def test_results_that_outlived_their_lease_are_dropped_from_the_batch(
    api: Api, acme: TenantFixture, private_ok: Any
) -> None:
    endpoint_id = create_endpoint(api, acme.key, "http://127.0.0.1:9/h")["id"]
    endpoint_row = Endpoint.objects.get(pk=endpoint_id)
    _send_tests(api, acme.key, str(endpoint_row.pk), 3)
    first, second, third = [c for c in worker.claim(50) if c.endpoint_id == str(endpoint_row.pk)]
    # another worker took the second one again after its lease ran out
    Delivery.objects.filter(pk=second.id).update(
        locked_until=timezone.now() + timedelta(seconds=60), attempts=2
    )
    answer = Outcome(500, "", "", 5, None)
    before = _deliveries_total("retrying")
    # when
    recorded = worker.record_results(
        [worker.Result(c.id, c.lease, c.attempts, answer, timezone.now())
         for c in (first, second, third)]
    )
    # then
    assert recorded == 2
    assert _deliveries_total("retrying") - before == 2
    retaken = Delivery.objects.get(pk=second.id)
    assert retaken.attempts == 2 and retaken.locked_until is not None
    assert not DeliveryAttempt.objects.filter(delivery_id=second.id).exists()
    assert DeliveryAttempt.objects.filter(delivery_id__in=[first.id, third.id]).count() == 2
    endpoint_row.refresh_from_db()
    assert endpoint_row.consecutive_failures == 2


@pytest.mark.parametrize(
    ("answers", "failures"),
    [
        ([500, 500, 200, 500], 1),  # a success resets the count; the failure after it counts
        ([200, 500, 500], 2),
        ([200, 200], 0),
        ([500, 500, 500], 5),  # adds to the two failures the endpoint had
    ],
)
def test_endpoint_health_follows_the_results_in_order(
    api: Api, acme: TenantFixture, private_ok: Any, answers: list[int], failures: int
) -> None:
    endpoint_id = create_endpoint(api, acme.key, "http://127.0.0.1:9/h")["id"]
    since = timezone.now() - timedelta(hours=1)
    Endpoint.objects.filter(pk=endpoint_id).update(consecutive_failures=2, failing_since=since)
    _send_tests(api, acme.key, endpoint_id, len(answers))
    claimed = [c for c in worker.claim(50) if c.endpoint_id == endpoint_id]
    worker.record_results([
        worker.Result(c.id, c.lease, c.attempts, Outcome(code, "", "", 1, None), timezone.now())
        for c, code in zip(claimed, answers, strict=True)
    ])
    row = Endpoint.objects.get(pk=endpoint_id)
    assert row.consecutive_failures == failures
    if failures == 0:
        assert row.failing_since is None
    elif 200 in answers:
        assert row.failing_since is not None and row.failing_since > since
    else:
        assert row.failing_since == since


# --- Several workers at once, on committed data


@pytest.fixture
def tenant(committed: None, settings: Any) -> Iterator[TenantFixture]:
    settings.WEBHOOKS_ALLOW_PRIVATE_NETWORKS = True
    settings.WEBHOOK_RETRY_SCHEDULE = []  # every failure is final
    with fresh_tenant("whb") as fresh:
        yield fresh


def test_concurrent_workers_never_share_a_delivery_and_count_every_failure(
    api: Api, tenant: TenantFixture
) -> None:
    # given: 40 due deliveries of two endpoints
    endpoints = [create_endpoint(api, tenant.key, f"http://127.0.0.1:9/{n}")["id"] for n in (1, 2)]
    for endpoint_id in endpoints:
        _send_tests(api, tenant.key, endpoint_id, 20)
    claims: list[list[worker.Claimed]] = [[] for _ in range(4)]
    failures: list[BaseException] = []
    barrier = threading.Barrier(4)

    def run(index: int, step: Any) -> None:
        try:
            barrier.wait(timeout=30)
            step(index)
        except BaseException as exc:  # reported below
            failures.append(exc)
            barrier.abort()
        finally:
            connections.close_all()

    def in_threads(step: Any) -> None:
        threads = [threading.Thread(target=run, args=(i, step)) for i in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert not failures, failures

    def claim_until_empty(index: int) -> None:
        while batch := worker.claim(3):
            claims[index].extend(batch)

    # when: four workers claim at once, then record failures of the same endpoints at once
    in_threads(claim_until_empty)
    everything = [c for batch in claims for c in batch]
    foreign = [c for c in everything if c.endpoint_id not in endpoints]
    ours = [c for c in everything if c.endpoint_id in endpoints]

    def record_failures(index: int) -> None:
        mine = [c for c in claims[index] if c.endpoint_id in endpoints]
        for start in range(0, len(mine), 4):
            worker.record_results([
                worker.Result(c.id, c.lease, c.attempts, Outcome(500, "", "", 1, None),
                              timezone.now())
                for c in mine[start:start + 4]
            ])

    try:
        in_threads(record_failures)
    finally:
        # other modules' leftovers claimed on the way are handed back as they were
        Delivery.objects.filter(pk__in=[c.id for c in foreign]).update(locked_until=None)
    # then: each delivery was claimed by exactly one worker, and every failure was counted
    assert len(ours) == 40 and len({c.id for c in ours}) == 40
    for endpoint_id in endpoints:
        row = Endpoint.objects.get(pk=endpoint_id)
        assert row.consecutive_failures == 20 and row.is_active
    statuses = Delivery.objects.filter(endpoint_id__in=endpoints).values_list("status", flat=True)
    assert list(statuses) == ["failed"] * 40
