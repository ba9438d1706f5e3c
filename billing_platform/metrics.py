"""Prometheus metrics, served at `/metrics` behind a bearer token (`METRICS_TOKEN`).

With several gunicorn workers every worker counts in its own process; prometheus_client's
multiprocess mode (`PROMETHEUS_MULTIPROC_DIR`, set up by deploy/gunicorn.conf.py) keeps the
counts in files that the scraped worker sums. Without it (one process: tests, `manage.py`
commands) the process's own registry is served.

The webhook outbox lag is not counted but read at scrape time, with one query over the pending
deliveries (their partial index), so it is right whichever process delivers.
"""

from __future__ import annotations

import hmac
import os
from collections.abc import Iterator
from typing import Any

# A process started outside gunicorn (the webhook worker) with PROMETHEUS_MULTIPROC_DIR set would
# fail on its first count if the directory did not exist yet.
if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    try:
        os.makedirs(os.environ["PROMETHEUS_MULTIPROC_DIR"], exist_ok=True)
    except OSError as _exc:
        # Never stop a command for metrics: count in this process alone and say so.
        import logging

        logging.getLogger("billable.metrics").warning(
            "PROMETHEUS_MULTIPROC_DIR %s cannot be created (%s); counting in this process only",
            os.environ["PROMETHEUS_MULTIPROC_DIR"], _exc,
        )
        del os.environ["PROMETHEUS_MULTIPROC_DIR"]

from django.conf import settings
from django.db import connection
from django.http import HttpRequest, HttpResponse, HttpResponseBase
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from billing_platform import errors
from billing_platform.problems import problem_response

_KNOWN_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"})
CONSUME_ROUTE = "/api/v1/billing/quota/consume"

REQUESTS = Counter(
    "billable_http_requests_total",
    "HTTP requests answered, by method, route pattern and status code.",
    ["method", "route", "status"],
)
REQUEST_SECONDS = Histogram(
    "billable_http_request_duration_seconds",
    "Time from the first middleware to the response, by method and route pattern.",
    ["method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
CONSUMES = Counter(
    "billable_quota_consume_total",
    "Answers of POST /billing/quota/consume: success, replayed, or the problem code "
    "(quota_exhausted, insufficient_quota, customer_not_found, ...).",
    ["outcome"],
)
WEBHOOK_DELIVERIES = Counter(
    "billable_webhook_deliveries_total",
    "Webhook delivery attempts by outcome: succeeded, retrying, failed (no retry left), gone "
    "(410; endpoint disabled).",
    ["outcome"],
)
ONBOARDING_SECONDS = Histogram(
    "billable_tenant_onboarding_seconds",
    "Time to onboard a tenant, by path: spare (a pre-built schema claimed) or build "
    "(a schema migrated because no spare was left).",
    ["path"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)


def observe_request(
    request: HttpRequest, response: HttpResponseBase, *, route: str, seconds: float
) -> None:
    method = request.method if request.method in _KNOWN_METHODS else "OTHER"
    REQUESTS.labels(method=method, route=route, status=str(response.status_code)).inc()
    REQUEST_SECONDS.labels(method=method, route=route).observe(seconds)
    if route == CONSUME_ROUTE and method == "POST":
        CONSUMES.labels(outcome=consume_outcome(response)).inc()


def consume_outcome(response: HttpResponseBase) -> str:
    if response.get("Idempotent-Replayed") == "true":
        return "replayed"
    if 200 <= response.status_code < 300:
        return "success"
    code = getattr(response, "problem_code", None)
    return code if isinstance(code, str) else f"http_{response.status_code}"


class OutboxCollector(Collector):
    """The webhook outbox at scrape time: pending deliveries and how late the oldest due one is."""

    def describe(self) -> Iterator[GaugeMetricFamily]:
        # Registration asks for the names; without this it would run the query at import time.
        yield from self._families()

    def _families(self) -> tuple[GaugeMetricFamily, GaugeMetricFamily, GaugeMetricFamily]:
        pending = GaugeMetricFamily(
            "billable_webhook_outbox_pending", "Webhook deliveries waiting to be delivered."
        )
        oldest = GaugeMetricFamily(
            "billable_webhook_outbox_oldest_pending_age_seconds",
            "Age of the oldest pending webhook delivery (0 when none is pending).",
        )
        lag = GaugeMetricFamily(
            "billable_webhook_outbox_lag_seconds",
            "How long the most overdue pending delivery has been due (0 when none is overdue).",
        )
        return pending, oldest, lag

    def collect(self) -> Iterator[GaugeMetricFamily]:
        pending, oldest, lag = self._families()
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*),"
                " COALESCE(EXTRACT(EPOCH FROM now() - min(created_at)), 0),"
                " COALESCE(EXTRACT(EPOCH FROM now() - min(next_attempt_at)"
                "   FILTER (WHERE next_attempt_at <= now())), 0)"
                " FROM webhooks_delivery WHERE status = 'pending'"
            )
            count, age, overdue = cursor.fetchone() or (0, 0, 0)
        pending.add_metric([], float(count))
        oldest.add_metric([], max(0.0, float(age)))
        lag.add_metric([], max(0.0, float(overdue)))
        yield pending
        yield oldest
        yield lag


_outbox = OutboxCollector()
if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    REGISTRY.register(_outbox)


def _registry() -> Any:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # A fresh registry per scrape, as prometheus_client's multiprocess mode asks.
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        registry.register(_outbox)
        return registry
    return REGISTRY


def metrics_view(request: HttpRequest) -> HttpResponse:
    """Prometheus text format; 404 unless METRICS_TOKEN is set, 401 without that bearer token."""
    token: str = settings.METRICS_TOKEN
    if not token:
        return problem_response(errors.NotFound(f"No route for {request.path}."))
    scheme, _, presented = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(
        presented.strip().encode(), token.encode()
    ):
        return problem_response(
            errors.NotAuthenticated("The metrics need `Authorization: Bearer <METRICS_TOKEN>`.")
        )
    return HttpResponse(generate_latest(_registry()), content_type=CONTENT_TYPE_LATEST)
