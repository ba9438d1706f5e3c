"""The delivery worker: claim due deliveries, post them, record every attempt.

Any number of workers share the outbox: a claim takes rows with `FOR UPDATE SKIP LOCKED` and
leases them (`locked_until`); a worker killed mid-delivery loses nothing, the delivery is taken
again once its lease ends. Workers sleep on `LISTEN billable_webhooks` (the fan-out NOTIFYs when it
writes deliveries) and poll for retries that come due.

Within one worker, deliveries are posted by a small pool of threads (WEBHOOK_WORKER_THREADS). The
main thread claims only as many deliveries as there are idle threads, so a lease starts when its
post starts, never while it waits in a queue. On stop, in-flight posts finish and are recorded.
"""

from __future__ import annotations

import logging
import queue
import random
import threading
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import close_old_connections, connection, connections, transaction
from django.db.models import F
from django.db.models.functions import Coalesce
from django.utils import timezone

from billing_platform.core import crypto, metrics
from billing_platform.core.listen import Listener
from billing_platform.webhooks.delivery import (
    Clients,
    Outcome,
    event_body,
    new_client,
    post,
    signature_headers,
)
from billing_platform.webhooks.fanout import NOTIFY_CHANNEL
from billing_platform.webhooks.models import Delivery, DeliveryAttempt, DeliveryStatus, Endpoint
from tenants import resolution

logger = logging.getLogger("billable.webhooks.worker")

MAX_CONSECUTIVE_FAILURES = 50
FAILING_DAYS_BEFORE_DISABLE = 5
# While posts are in flight the main thread checks for new work this often (seconds).
BUSY_POLL_SECONDS = 0.05


def claim_due(limit: int = 50) -> list[str]:
    """Lease up to `limit` due deliveries for this worker."""
    if limit <= 0:
        return []
    with connection.cursor() as cursor:
        cursor.execute(
            """
            UPDATE webhooks_delivery
            SET locked_until = clock_timestamp() + make_interval(secs => %s),
                attempts = attempts + 1, updated_at = now()
            WHERE id IN (
                SELECT id FROM webhooks_delivery
                WHERE status = 'pending' AND next_attempt_at <= clock_timestamp()
                  AND (locked_until IS NULL OR locked_until < clock_timestamp())
                ORDER BY next_attempt_at
                LIMIT %s
                FOR UPDATE SKIP LOCKED)
            RETURNING id
            """,
            [settings.WEBHOOK_LEASE_SECONDS, limit],
        )
        return [str(row[0]) for row in cursor.fetchall()]


def _secrets(endpoint: Endpoint) -> list[str]:
    current = [crypto.decrypt(endpoint.secret_encrypted)]
    if (
        endpoint.previous_secret_encrypted
        and endpoint.previous_secret_expires_at
        and endpoint.previous_secret_expires_at > timezone.now()
    ):
        current.append(crypto.decrypt(endpoint.previous_secret_encrypted))
    return current


def _next_delay(attempts: int, outcome: Outcome) -> int | None:
    schedule = settings.WEBHOOK_RETRY_SCHEDULE
    if attempts > len(schedule):
        return None
    if outcome.retry_after is not None:
        return outcome.retry_after
    base = schedule[attempts - 1]
    return max(0, round(base * random.uniform(0.9, 1.1)))


def _disable(endpoint: Endpoint, reason: str) -> None:
    Endpoint.objects.filter(pk=endpoint.pk, is_active=True).update(
        is_active=False, disabled_at=timezone.now(), disabled_reason=reason[:200]
    )
    resolution.invalidate_tenant(endpoint.tenant)


def record(delivery: Delivery, outcome: Outcome) -> None:
    """Log the attempt and move the delivery (and its endpoint's health) on.

    Only while this worker's lease holds: a post that outlived its lease has been claimed again
    (and will be posted and recorded by the new holder), so its late result is dropped.
    """
    now = timezone.now()
    endpoint = delivery.endpoint
    result = "succeeded"
    with transaction.atomic():
        still_ours = (
            Delivery.objects.select_for_update()
            .filter(pk=delivery.pk, locked_until=delivery.locked_until, status="pending")
            .exists()
        )
        if not still_ours:
            logger.warning("delivery %s outlived its lease; its result is dropped", delivery.pk)
            return
        DeliveryAttempt.objects.create(
            delivery=delivery,
            duration_ms=outcome.duration_ms,
            status_code=outcome.status_code,
            response_body=outcome.body,
            error=outcome.error,
        )
        changes: dict[str, Any] = {
            "locked_until": None,
            "last_status_code": outcome.status_code,
            "last_error": outcome.error,
            "updated_at": now,
        }
        if outcome.ok:
            changes["status"] = DeliveryStatus.SUCCEEDED
            Endpoint.objects.filter(pk=endpoint.pk).update(
                consecutive_failures=0, failing_since=None
            )
        else:
            delay = None if outcome.status_code == 410 else _next_delay(delivery.attempts, outcome)
            if delay is None:
                changes["status"] = DeliveryStatus.FAILED
                result = "gone" if outcome.status_code == 410 else "failed"
            else:
                changes["next_attempt_at"] = now + timedelta(seconds=delay)
                result = "retrying"
            # Counted in SQL: threads of this and other workers fail the same endpoint at once.
            Endpoint.objects.filter(pk=endpoint.pk).update(
                consecutive_failures=F("consecutive_failures") + 1,
                failing_since=Coalesce(F("failing_since"), now),
            )
            failures, failing_since = (
                Endpoint.objects.filter(pk=endpoint.pk)
                .values_list("consecutive_failures", "failing_since")
                .get()
            )
            if outcome.status_code == 410:
                _disable(endpoint, "The receiver answered 410 Gone.")
            elif failures >= MAX_CONSECUTIVE_FAILURES:
                _disable(endpoint, f"{failures} consecutive failed deliveries.")
            elif now - (failing_since or now) >= timedelta(days=FAILING_DAYS_BEFORE_DISABLE):
                _disable(endpoint, f"Every delivery failed for {FAILING_DAYS_BEFORE_DISABLE} days.")
        Delivery.objects.filter(pk=delivery.pk).update(**changes)
    # Counted once the attempt is recorded, so a rolled-back record is not counted.
    metrics.WEBHOOK_DELIVERIES.labels(outcome=result).inc()


def deliver_one(delivery_id: str, client: Clients) -> Outcome | None:
    """Post one claimed delivery and record the attempt (None: nothing to post)."""
    delivery = (
        Delivery.objects.select_related("event", "endpoint", "endpoint__tenant")
        .filter(pk=delivery_id)
        .first()
    )
    if delivery is None or delivery.status != DeliveryStatus.PENDING:
        return None
    endpoint = delivery.endpoint
    if not endpoint.is_active:
        Delivery.objects.filter(pk=delivery.pk).update(
            status=DeliveryStatus.FAILED,
            locked_until=None,
            last_error="endpoint disabled",
            updated_at=timezone.now(),
        )
        return None
    body = event_body(delivery.event, endpoint.tenant.slug)
    headers = {
        **crypto.decrypt_json(endpoint.headers_encrypted),
        **signature_headers(delivery.event_id, body, _secrets(endpoint)),
    }
    outcome = post(client, endpoint.url, body, headers)
    record(delivery, outcome)
    return outcome


def _deliver_logged(delivery_id: str, client: Clients) -> None:
    try:
        deliver_one(delivery_id, client)
    except Exception:
        logger.exception("delivery %s failed unexpectedly", delivery_id)


def deliver_due(client: Clients, *, limit: int = 50) -> int:
    """Claim and post what is due now, one after the other; returns how many were attempted."""
    ids = claim_due(limit)
    for delivery_id in ids:
        _deliver_logged(delivery_id, client)
    return len(ids)


class DeliveryPool:
    """Threads that post claimed deliveries; each closes its own database connection."""

    def __init__(self, size: int, client: Clients) -> None:
        self.size = max(1, size)
        self.client = client
        self._queue: queue.SimpleQueue[str | None] = queue.SimpleQueue()
        self._idle = threading.Semaphore(self.size)
        self._busy = 0
        self._lock = threading.Lock()
        self._threads = [
            threading.Thread(target=self._work, name=f"webhook-post-{n}", daemon=True)
            for n in range(self.size)
        ]
        for thread in self._threads:
            thread.start()

    def _work(self) -> None:
        try:
            while True:
                delivery_id = self._queue.get()
                if delivery_id is None:
                    return
                try:
                    _deliver_logged(delivery_id, self.client)
                    close_old_connections()
                finally:
                    with self._lock:
                        self._busy -= 1
                    self._idle.release()
        finally:
            connections.close_all()

    def free(self) -> int:
        with self._lock:
            return self.size - self._busy

    def busy(self) -> int:
        with self._lock:
            return self._busy

    def submit(self, delivery_id: str) -> None:
        self._idle.acquire()
        with self._lock:
            self._busy += 1
        self._queue.put(delivery_id)

    def wait_for_idle_thread(self, timeout: float) -> None:
        if self._idle.acquire(timeout=timeout):
            self._idle.release()

    def shutdown(self) -> None:
        """Let in-flight posts finish and record, then stop every thread."""
        for _ in self._threads:
            self._queue.put(None)
        for thread in self._threads:
            thread.join()


def run(stop: threading.Event, *, poll_seconds: float = 1.0, threads: int | None = None) -> None:
    """Deliver until `stop` is set; woken by NOTIFY, polling for due retries.

    Posts run on `threads` threads (default WEBHOOK_WORKER_THREADS); after `stop` the posts in
    flight finish and are recorded before this returns.
    """
    listener = Listener(NOTIFY_CHANNEL)
    listener.wait(0)  # LISTEN before the first claim, so no notification falls between
    client = new_client()
    pool = DeliveryPool(threads or settings.WEBHOOK_WORKER_THREADS, client)
    try:
        while not stop.is_set():
            free = pool.free()
            try:
                claimed = claim_due(free)
            except Exception:
                logger.exception("claiming deliveries failed")
                close_old_connections()
                connection.close()
                claimed = []
                stop.wait(poll_seconds)
            for delivery_id in claimed:
                pool.submit(delivery_id)
            if free and len(claimed) == free:
                continue  # more may be due: claim again as soon as a thread is idle
            if not pool.free():
                pool.wait_for_idle_thread(poll_seconds)
                continue
            listener.wait(BUSY_POLL_SECONDS if pool.busy() else poll_seconds)
    finally:
        pool.shutdown()
        client.close()
        listener.close()
        connection.close()
