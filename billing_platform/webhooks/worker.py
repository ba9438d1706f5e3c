"""The delivery worker: claim due deliveries in batches, post them, record the results in batches.

Any number of workers share the outbox. One statement claims a batch: it takes due rows with
`FOR UPDATE SKIP LOCKED`, leases them (`locked_until`) and returns everything needed to post them
(event, endpoint, tenant), so posting reads nothing more. A worker killed mid-delivery, or
after its posts and before their results were recorded, loses nothing: the delivery is taken
again once its lease ends, and posted again with the same `webhook-id`. Workers sleep on
`LISTEN billable_webhooks` (the fan-out NOTIFYs when it writes deliveries) and poll for retries
that come due.

Within one worker the main thread claims, a pool of threads (WEBHOOK_WORKER_THREADS) posts, and
one recording thread writes the results: one statement per batch moves the deliveries on, logs
every attempt (`DeliveryAttempt`) and keeps the endpoints' health, only for deliveries whose
lease is still this worker's. The main thread claims only as many deliveries as there are idle
posting threads, so a lease starts when its post starts, never while it waits in a queue. On
stop, in-flight posts finish and every result is recorded.

    run ── claim() ──> PostingPool ── attempt() ──> Recorder ── record_results()
"""

from __future__ import annotations

import json
import logging
import queue
import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any, NamedTuple

from django.conf import settings
from django.db import close_old_connections, connection, connections
from django.utils import timezone

from billing_platform.core import crypto, metrics
from billing_platform.core.db import qualified_cursor
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
from billing_platform.webhooks.models import Delivery, DeliveryStatus
from tenants import resolution
from tenants.models import Tenant

logger = logging.getLogger("billable.webhooks.worker")

MAX_CONSECUTIVE_FAILURES = 50
FAILING_DAYS_BEFORE_DISABLE = 5
# While posts are in flight the main thread checks for new work this often (seconds), and waits
# at most this long for half of the posting threads to be idle before it claims for fewer.
BUSY_POLL_SECONDS = 0.05
# The recording thread gathers results for up to this long (seconds) or this many, then writes
# them in one statement: the status of a delivery lags its post by at most that much.
RECORD_LINGER_SECONDS = 0.02
RECORD_BATCH = 200
DISABLED_ENDPOINT = "endpoint disabled"
MASKED = "••••"


# --- Statements prepared once per connection: planning the claim and record statements costs
# the database more than running them (`qualified_cursor(prepared=True)`; the webhook tables
# live in the public schema every path includes, so no search_path is needed).


def _prepared_cursor() -> Any:
    return qualified_cursor(prepared=True)


# --- Claiming


class ClaimedEvent(NamedTuple):
    """The event of a claimed delivery, in the fields `event_body` reads."""

    pk: str
    type: str
    created_at: datetime
    data: Any


@dataclass(frozen=True, slots=True)
class Claimed:
    """A delivery leased to this worker, with what posting it needs."""

    id: str
    lease: datetime | None  # `locked_until` as claimed: the result is recorded only while it holds
    attempts: int  # this attempt included
    event: ClaimedEvent
    tenant_slug: str
    endpoint_id: str
    url: str
    endpoint_active: bool
    secret_encrypted: str
    previous_secret_encrypted: str
    previous_secret_expires_at: datetime | None
    headers_encrypted: str


CLAIM_SQL = """
WITH due AS (
    SELECT id FROM webhooks_delivery
    WHERE status = 'pending' AND next_attempt_at <= %(now)s
      AND (locked_until IS NULL OR locked_until < %(now)s)
    ORDER BY next_attempt_at
    LIMIT {limit:d}
    FOR UPDATE SKIP LOCKED
), claimed AS (
    UPDATE webhooks_delivery d
    SET locked_until = %(now)s + make_interval(secs => %(lease)s::int),
        attempts = d.attempts + 1, updated_at = %(now)s
    FROM due
    WHERE d.id = due.id
    RETURNING d.id, d.locked_until, d.attempts, d.next_attempt_at, d.event_id, d.endpoint_id
)
SELECT c.id, c.locked_until, c.attempts,
       ev.id, ev.type, ev.created_at, ev.data, t.slug,
       e.id, e.url, e.is_active, e.secret_encrypted, e.previous_secret_encrypted,
       e.previous_secret_expires_at, e.headers_encrypted
FROM claimed c
JOIN webhooks_event ev ON ev.id = c.event_id
JOIN webhooks_endpoint e ON e.id = c.endpoint_id
JOIN tenants_tenant t ON t.id = e.tenant_id
ORDER BY c.next_attempt_at, c.id
"""


@lru_cache(maxsize=256)
def _claim_statement(limit: int) -> str:
    """The claim of `limit` rows: a constant limit lets PostgreSQL keep one plan for it."""
    return CLAIM_SQL.format(limit=limit)


def claim(limit: int = 50) -> list[Claimed]:
    """Lease up to `limit` due deliveries for this worker: the time, then one statement."""
    if limit <= 0:
        return []
    with _prepared_cursor() as cursor:
        # The database's time, read first: the claim's UPDATE calls no volatile function, which
        # Citus refuses in an UPDATE of a table it manages (the outbox on a Citus cluster).
        cursor.execute("SELECT clock_timestamp()")
        now = cursor.fetchone()[0]
        cursor.execute(
            _claim_statement(limit), {"lease": settings.WEBHOOK_LEASE_SECONDS, "now": now}
        )
        rows = cursor.fetchall()
    return [
        Claimed(
            id=str(delivery_id),
            lease=lease,
            attempts=attempts,
            # jsonb arrives as text (Django's loader), parsed once here
            event=ClaimedEvent(event_id, event_type, created_at, json.loads(data)),
            tenant_slug=slug,
            endpoint_id=str(endpoint_id),
            url=url,
            endpoint_active=active,
            secret_encrypted=secret,
            previous_secret_encrypted=previous_secret,
            previous_secret_expires_at=previous_expires,
            headers_encrypted=headers,
        )
        for (
            delivery_id, lease, attempts,
            event_id, event_type, created_at, data, slug,
            endpoint_id, url, active, secret, previous_secret, previous_expires, headers,
        ) in rows
    ]


# --- Posting


@dataclass(frozen=True, slots=True)
class Result:
    """What became of one claimed delivery; `outcome` None: not posted (endpoint disabled)."""

    delivery_id: str
    lease: datetime | None
    attempts: int
    outcome: Outcome | None
    attempted_at: datetime
    tenant_slug: str = ""  # for the per-tenant metrics
    url: str = ""  # where it was posted (the attempt log keeps it: the endpoint's may change)


@lru_cache(maxsize=1024)
def _decrypted(token: str) -> str:
    """A stored secret in clear; keyed by its ciphertext, so a rotation is a new entry."""
    return crypto.decrypt(token)


@lru_cache(maxsize=1024)
def _custom_headers(token: str) -> tuple[tuple[str, str], ...]:
    return tuple(crypto.decrypt_json(token).items()) if token else ()


def _secrets(claimed: Claimed, now: datetime) -> list[str]:
    current = [_decrypted(claimed.secret_encrypted)]
    expires = claimed.previous_secret_expires_at
    if claimed.previous_secret_encrypted and expires and expires > now:
        current.append(_decrypted(claimed.previous_secret_encrypted))
    return current


def attempt(claimed: Claimed, clients: Clients) -> Result:
    """Sign and post one claimed delivery; every failure is an outcome, never raised."""
    started = timezone.now()
    if not claimed.endpoint_active:
        return Result(claimed.id, claimed.lease, claimed.attempts, None, started,
                      claimed.tenant_slug, claimed.url)
    try:
        body = event_body(claimed.event, claimed.tenant_slug)
        custom = dict(_custom_headers(claimed.headers_encrypted))
        headers = {
            **custom,
            **signature_headers(claimed.event.pk, body, _secrets(claimed, started)),
        }
    except Exception as exc:  # a secret that no key decrypts: a failed attempt, retried
        logger.exception("delivery %s could not be prepared", claimed.id)
        outcome = Outcome(None, "", f"not sent: {exc.__class__.__name__}: {exc}"[:1000], 0, None)
    else:
        outcome = post(clients, claimed.url, body, headers)
        # Custom header values are secrets (shown masked, as the API shows them).
        for name in custom:
            if name in outcome.sent_headers:
                outcome.sent_headers[name] = MASKED
    return Result(claimed.id, claimed.lease, claimed.attempts, outcome, started,
                  claimed.tenant_slug, claimed.url)


# --- Recording


def _next_delay(attempts: int, outcome: Outcome) -> int | None:
    schedule = settings.WEBHOOK_RETRY_SCHEDULE
    if attempts > len(schedule):
        return None
    if outcome.retry_after is not None:
        return outcome.retry_after
    base = schedule[attempts - 1]
    return max(0, round(base * random.uniform(0.9, 1.1)))


# One statement records a batch of results. `result` holds them in the order they were obtained
# (`seq`); only deliveries still pending under the lease they were claimed with move on (a post
# that outlived its lease has been claimed again, and the new holder records it). Each moved
# delivery gets its attempt logged; each endpoint's health follows its results in order: a success
# resets the count of consecutive failures, the failures after the last success add to it.
# Endpoint rows are locked in id order, so workers recording batches at once never deadlock.
RECORD_SQL = """
WITH result AS (
    SELECT * FROM jsonb_to_recordset(%(results)s::jsonb) AS r(
        id uuid, lease timestamptz, seq int, status text, next_attempt_at timestamptz,
        status_code int, duration_ms int, response_body text, error text,
        attempted_at timestamptz, logged bool, request_url text, request_headers jsonb,
        response_headers jsonb)
), moved AS (
    UPDATE webhooks_delivery d
    SET status = r.status, locked_until = NULL,
        next_attempt_at = COALESCE(r.next_attempt_at, d.next_attempt_at),
        last_status_code = CASE WHEN r.logged THEN r.status_code ELSE d.last_status_code END,
        last_error = r.error, updated_at = %(now)s
    FROM result r
    WHERE d.id = ANY(ARRAY(SELECT id FROM result)) AND d.id = r.id
      AND d.status = 'pending' AND d.locked_until IS NOT DISTINCT FROM r.lease
    RETURNING d.id, d.endpoint_id
), logged AS (
    INSERT INTO webhooks_deliveryattempt
        (delivery_id, attempted_at, duration_ms, status_code, response_body, error,
         request_url, request_headers, response_headers)
    SELECT r.id, r.attempted_at, r.duration_ms, r.status_code, r.response_body, r.error,
           r.request_url, r.request_headers, r.response_headers
    FROM result r JOIN moved m ON m.id = r.id
    WHERE r.logged
), outcomes AS (
    SELECT m.endpoint_id, r.seq, r.status = 'succeeded' AS ok,
           r.status_code IS NOT DISTINCT FROM 410 AS gone
    FROM result r JOIN moved m ON m.id = r.id
    WHERE r.logged
), health AS (
    SELECT o.endpoint_id, bool_or(o.ok) AS reset, bool_or(o.gone) AS gone,
           count(*) FILTER (WHERE NOT o.ok AND o.seq > COALESCE(s.last_ok, -1)) AS failures
    FROM outcomes o
    LEFT JOIN (SELECT endpoint_id, max(seq) AS last_ok FROM outcomes WHERE ok
               GROUP BY endpoint_id) s ON s.endpoint_id = o.endpoint_id
    GROUP BY o.endpoint_id
), locked AS MATERIALIZED (
    -- The endpoints are named through arrays, not joined: a row lock over a join with another
    -- CTE would lock that CTE's rows by copy (a record column), which Citus then reads back in
    -- the wrong format when the outbox is a Citus-managed table.
    SELECT e.id, e.is_active, e.consecutive_failures, e.failing_since
    FROM webhooks_endpoint e
    WHERE e.id = ANY(ARRAY(SELECT endpoint_id FROM health))
      AND (e.id = ANY(ARRAY(SELECT endpoint_id FROM health WHERE failures > 0 OR gone))
           OR e.consecutive_failures <> 0 OR e.failing_since IS NOT NULL)
    ORDER BY e.id
    FOR NO KEY UPDATE OF e
), counted AS (
    SELECT l.id, l.is_active, h.gone, h.failures,
           CASE WHEN h.reset THEN h.failures
                ELSE l.consecutive_failures + h.failures END AS consecutive_failures,
           CASE WHEN h.failures = 0 THEN NULL
                WHEN h.reset THEN %(now)s::timestamptz
                ELSE COALESCE(l.failing_since, %(now)s::timestamptz) END AS failing_since
    FROM locked l JOIN health h ON h.endpoint_id = l.id
), verdict AS (
    SELECT c.*,
           CASE WHEN NOT c.is_active THEN NULL
                WHEN c.gone THEN 'The receiver answered 410 Gone.'
                WHEN c.failures = 0 THEN NULL
                WHEN c.consecutive_failures >= %(max_failures)s::int
                    THEN c.consecutive_failures || ' consecutive failed deliveries.'
                WHEN c.failing_since <= %(failing_cutoff)s::timestamptz
                    THEN %(failing_reason)s::text
           END AS disabled_reason
    FROM counted c
), endpoints AS (
    UPDATE webhooks_endpoint e
    SET consecutive_failures = v.consecutive_failures, failing_since = v.failing_since,
        is_active = e.is_active AND v.disabled_reason IS NULL,
        disabled_at = CASE WHEN v.disabled_reason IS NULL THEN e.disabled_at ELSE %(now)s END,
        disabled_reason = COALESCE(v.disabled_reason, e.disabled_reason)
    FROM verdict v
    WHERE e.id = v.id
    RETURNING e.tenant_id, v.disabled_reason
)
SELECT (SELECT array_agg(id::text) FROM moved),
       (SELECT array_agg(DISTINCT tenant_id) FROM endpoints WHERE disabled_reason IS NOT NULL)
"""


@dataclass(frozen=True, slots=True)
class _Row:
    status: str
    next_attempt_at: datetime | None
    label: str | None  # the metric's outcome; None: not an attempt


def _row(result: Result, now: datetime) -> _Row:
    outcome = result.outcome
    if outcome is None:
        return _Row(DeliveryStatus.FAILED, None, None)
    if outcome.ok:
        return _Row(DeliveryStatus.SUCCEEDED, None, "succeeded")
    if outcome.status_code == 410:
        return _Row(DeliveryStatus.FAILED, None, "gone")
    delay = _next_delay(result.attempts, outcome)
    if delay is None:
        return _Row(DeliveryStatus.FAILED, None, "failed")
    return _Row(DeliveryStatus.PENDING, now + timedelta(seconds=delay), "retrying")


def _text(value: str) -> str:
    """Text PostgreSQL stores: no NUL, no lone surrogate (from an exception's message)."""
    return value.replace("\x00", "\ufffd").encode("utf-8", "replace").decode("utf-8")


def record_results(results: list[Result]) -> int:
    """Record a batch of results in one statement; returns how many were still this worker's.

    Each delivery still pending under the lease it was claimed with moves on (succeeded; pending
    with its next attempt scheduled; failed) and gets its attempt logged; the others outlived
    their lease, were claimed again, and are dropped here (the new holder records them). Endpoints
    that answered 410, failed 50 times in a row or for 5 days are disabled. Raises DatabaseError
    when the statement fails (nothing is recorded then).
    """
    if not results:
        return 0
    now = timezone.now()
    rows = [_row(result, now) for result in results]
    # One JSON document rather than an array per column: psycopg quotes one string, and
    # PostgreSQL parses it as fast.
    batch = [
        {
            "id": result.delivery_id,
            "lease": result.lease.isoformat() if result.lease else None,
            "seq": seq,
            "status": row.status,
            "next_attempt_at": row.next_attempt_at.isoformat() if row.next_attempt_at else None,
            "status_code": result.outcome.status_code if result.outcome else None,
            "duration_ms": result.outcome.duration_ms if result.outcome else 0,
            "response_body": _text(result.outcome.body) if result.outcome else "",
            "error": _text(result.outcome.error) if result.outcome else DISABLED_ENDPOINT,
            "attempted_at": result.attempted_at.isoformat(),
            "logged": result.outcome is not None,
            "request_url": _text(result.url),
            "request_headers": result.outcome.sent_headers if result.outcome else {},
            "response_headers": result.outcome.headers if result.outcome else [],
        }
        for seq, (result, row) in enumerate(zip(results, rows, strict=True))
    ]
    params: dict[str, Any] = {
        "results": json.dumps(batch, ensure_ascii=False),
        "now": now,
        "max_failures": MAX_CONSECUTIVE_FAILURES,
        "failing_cutoff": now - timedelta(days=FAILING_DAYS_BEFORE_DISABLE),
        "failing_reason": f"Every delivery failed for {FAILING_DAYS_BEFORE_DISABLE} days.",
    }
    with _prepared_cursor() as cursor:
        cursor.execute(RECORD_SQL, params)
        moved_ids, disabled_tenants = cursor.fetchone()
    moved = set(moved_ids or ())
    dropped = [r.delivery_id for r in results if r.delivery_id not in moved]
    if dropped:
        logger.warning("%d deliveries outlived their lease; their results are dropped: %s",
                       len(dropped), ", ".join(dropped[:10]))
    # Counted once the attempts are recorded, so a failed statement is not counted.
    labels = Counter(
        row.label for result, row in zip(results, rows, strict=True)
        if row.label and result.delivery_id in moved
    )
    for label, count in labels.items():
        metrics.WEBHOOK_DELIVERIES.labels(outcome=label).inc(count)
    per_tenant = Counter(
        (metrics.tenant_label(result.tenant_slug), row.label)
        for result, row in zip(results, rows, strict=True)
        if row.label and result.delivery_id in moved
    )
    for (tenant, label), count in per_tenant.items():
        metrics.TENANT_WEBHOOK_DELIVERIES.labels(tenant=tenant, outcome=label).inc(count)
    if disabled_tenants:
        # The tenant's cached subscriptions (resolved keys) must stop naming the endpoint.
        for tenant in Tenant.objects.filter(pk__in=disabled_tenants):
            resolution.invalidate_tenant(tenant)
    return len(moved)


def record(delivery: Delivery, outcome: Outcome) -> None:
    """Record one attempt of `delivery` as it was claimed (see `record_results`)."""
    record_results(
        [Result(str(delivery.pk), delivery.locked_until, delivery.attempts, outcome,
                timezone.now())]
    )


def _reset_connection() -> None:
    close_old_connections()
    connection.close()


def _record_retrying(results: list[Result]) -> None:
    """Record a batch; on failure once more on a fresh connection, then result by result.

    A result that cannot be recorded is not lost: its lease runs out and the delivery is taken
    again (and posted again, with the same webhook-id).
    """
    for _ in range(2):
        try:
            record_results(results)
            return
        except Exception:
            logger.exception("recording %d delivery results failed", len(results))
            _reset_connection()
    for result in results:  # one unrecordable result must not hold back the others
        try:
            record_results([result])
        except Exception:
            logger.exception("recording the result of delivery %s failed", result.delivery_id)
            _reset_connection()


# --- One process: deliver what is due (tests, commands)


def deliver_due(clients: Clients, *, limit: int = 50) -> int:
    """Claim what is due now, post it one after the other and record it; returns how many."""
    claimed = claim(limit)
    results = [attempt(c, clients) for c in claimed]
    record_results(results)
    return len(claimed)


# --- The worker: a claiming loop, posting threads, a recording thread


class Recorder:
    """A thread that records results in batches, on a database connection of its own."""

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[Result | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._work, name="webhook-record", daemon=True)
        self._thread.start()

    def put(self, result: Result) -> None:
        self._queue.put(result)

    def _gather(self, first: Result) -> tuple[list[Result], bool]:
        """`first` and what arrives within the linger after it; True once told to stop."""
        # One sleep rather than a wake-up per result: the posting threads never wait on this.
        time.sleep(RECORD_LINGER_SECONDS)
        batch = [first]
        while len(batch) < RECORD_BATCH:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is None:
                return batch, True
            batch.append(item)
        return batch, False

    def _work(self) -> None:
        try:
            stopping = False
            while not stopping:
                first = self._queue.get()
                if first is None:
                    return
                batch, stopping = self._gather(first)
                _record_retrying(batch)
        finally:
            connections.close_all()

    def shutdown(self) -> None:
        """Record every result put so far, then stop the thread."""
        self._queue.put(None)
        self._thread.join()


class PostingPool:
    """Threads that post claimed deliveries and hand the results to `deliver`."""

    def __init__(self, size: int, clients: Clients, deliver: Callable[[Result], None]) -> None:
        self.size = max(1, size)
        # While posts are in flight, claim for at least this many threads at once.
        self.batch = max(1, self.size // 2)
        self.clients = clients
        self._deliver = deliver
        self._queue: queue.SimpleQueue[Claimed | None] = queue.SimpleQueue()
        self._busy = 0
        self._wanted = self.size + 1  # idle threads the claiming loop waits for; none
        self._changed = threading.Condition()
        self._threads = [
            threading.Thread(target=self._work, name=f"webhook-post-{n}", daemon=True)
            for n in range(self.size)
        ]
        for thread in self._threads:
            thread.start()

    def _work(self) -> None:
        while True:
            claimed = self._queue.get()
            if claimed is None:
                return
            try:
                self._deliver(attempt(claimed, self.clients))
            except Exception:
                logger.exception("delivery %s failed unexpectedly", claimed.id)
            finally:
                with self._changed:
                    self._busy -= 1
                    if self.size - self._busy >= self._wanted:
                        self._changed.notify()

    def busy(self) -> int:
        with self._changed:
            return self._busy

    def submit(self, claimed: Claimed) -> None:
        with self._changed:
            self._busy += 1
        self._queue.put(claimed)

    def wait_for_free(self, count: int, timeout: float) -> int:
        """Wait until `count` threads are idle or `timeout` passes; returns how many are."""
        with self._changed:
            self._wanted = min(count, self.size)
            self._changed.wait_for(lambda: self.size - self._busy >= self._wanted, timeout)
            self._wanted = self.size + 1
            return self.size - self._busy

    def shutdown(self) -> None:
        """Let in-flight posts finish and hand over their results, then stop every thread."""
        for _ in self._threads:
            self._queue.put(None)
        for thread in self._threads:
            thread.join()


def _drain(listener: Listener) -> None:
    """Consume the notifications already waiting: one claim answers them all."""
    for _ in range(10_000):
        if not listener.wait(0):
            return


def run(stop: threading.Event, *, poll_seconds: float = 1.0, threads: int | None = None) -> None:
    """Deliver until `stop` is set; woken by NOTIFY, polling for due retries.

    Posts run on `threads` threads (default WEBHOOK_WORKER_THREADS); after `stop` the posts in
    flight finish and are recorded before this returns.
    """
    listener = Listener(NOTIFY_CHANNEL)
    listener.wait(0)  # LISTEN before the first claim, so no notification falls between
    clients = new_client()
    recorder = Recorder()
    pool = PostingPool(threads or settings.WEBHOOK_WORKER_THREADS, clients, recorder.put)
    more_due = True  # look once at start: work may have waited for a worker
    try:
        while not stop.is_set():
            if not more_due and listener.wait(BUSY_POLL_SECONDS if pool.busy() else poll_seconds):
                _drain(listener)
            # With posts in flight, wait a moment for a batch's worth of idle threads.
            free = pool.wait_for_free(pool.batch if pool.busy() else 1, BUSY_POLL_SECONDS)
            if stop.is_set():
                break
            if not free:
                more_due = True
                continue
            try:
                claimed = claim(free)
            except Exception:
                logger.exception("claiming deliveries failed")
                _reset_connection()
                more_due = True  # try again after a pause, on a new connection
                stop.wait(poll_seconds)
                continue
            for item in claimed:
                pool.submit(item)
            more_due = len(claimed) == free  # a full claim: more may be due
    finally:
        pool.shutdown()
        recorder.shutdown()
        clients.close()
        listener.close()
        connection.close()
