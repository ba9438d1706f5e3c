"""The delivery worker: claim due deliveries, post them, record every attempt.

Any number of workers share the outbox: a claim takes rows with `FOR UPDATE SKIP LOCKED` and
leases them (`locked_until`); a worker killed mid-delivery loses nothing, the delivery is taken
again once its lease ends. Workers sleep on `LISTEN billable_webhooks` (the fan-out NOTIFYs when it
writes deliveries) and poll once a second for retries that come due.
"""

from __future__ import annotations

import logging
import random
import threading
from datetime import timedelta
from typing import Any

import httpx
import psycopg
from django.conf import settings
from django.db import close_old_connections, connection, transaction
from django.utils import timezone

from billing_platform.webhooks import crypto
from billing_platform.webhooks.delivery import (
    Outcome,
    event_body,
    new_client,
    post,
    signature_headers,
)
from billing_platform.webhooks.fanout import NOTIFY_CHANNEL
from billing_platform.webhooks.models import Delivery, DeliveryAttempt, DeliveryStatus, Endpoint

logger = logging.getLogger("billable.webhooks.worker")

MAX_CONSECUTIVE_FAILURES = 50
FAILING_DAYS_BEFORE_DISABLE = 5


def claim_due(limit: int = 50) -> list[str]:
    """Lease up to `limit` due deliveries for this worker."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            UPDATE webhooks_delivery SET locked_until = clock_timestamp() + make_interval(secs => %s),
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
    from tenants import auth

    Endpoint.objects.filter(pk=endpoint.pk).update(
        is_active=False, disabled_at=timezone.now(), disabled_reason=reason[:200]
    )
    auth.invalidate_tenant(endpoint.tenant)


def record(delivery: Delivery, outcome: Outcome) -> None:
    """Log the attempt and move the delivery (and its endpoint's health) on."""
    now = timezone.now()
    endpoint = delivery.endpoint
    with transaction.atomic():
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
            else:
                changes["next_attempt_at"] = now + timedelta(seconds=delay)
            failures = endpoint.consecutive_failures + 1
            failing_since = endpoint.failing_since or now
            Endpoint.objects.filter(pk=endpoint.pk).update(
                consecutive_failures=failures, failing_since=failing_since
            )
            if outcome.status_code == 410:
                _disable(endpoint, "The receiver answered 410 Gone.")
            elif failures >= MAX_CONSECUTIVE_FAILURES:
                _disable(endpoint, f"{failures} consecutive failed deliveries.")
            elif now - failing_since >= timedelta(days=FAILING_DAYS_BEFORE_DISABLE):
                _disable(endpoint, "Every delivery failed for 5 days.")
        Delivery.objects.filter(pk=delivery.pk).update(**changes)


def deliver_one(delivery_id: str, client: httpx.Client) -> Outcome | None:
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
            status=DeliveryStatus.FAILED, locked_until=None, last_error="endpoint disabled"
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


def deliver_due(client: httpx.Client, *, limit: int = 50) -> int:
    """Claim and post what is due now; returns how many were attempted."""
    ids = claim_due(limit)
    for delivery_id in ids:
        try:
            deliver_one(delivery_id, client)
        except Exception:
            logger.exception("delivery %s failed unexpectedly", delivery_id)
    return len(ids)


def _listen_connection() -> psycopg.Connection[Any]:
    params = connection.get_connection_params()
    params.pop("cursor_factory", None)
    params.pop("context", None)
    params.pop("options", None)
    conn = psycopg.connect(**params, autocommit=True)
    conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
    return conn


def run(stop: threading.Event, *, poll_seconds: float = 1.0) -> None:
    """Deliver until `stop` is set; woken by NOTIFY, polling for due retries."""
    listener = _listen_connection()
    client = new_client()
    try:
        while not stop.is_set():
            try:
                while deliver_due(client) and not stop.is_set():
                    pass
            except Exception:
                logger.exception("delivery loop failed")
                close_old_connections()
            for _ in listener.notifies(timeout=poll_seconds, stop_after=1):
                break
    finally:
        client.close()
        listener.close()
