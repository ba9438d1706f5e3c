"""`/metrics` behind a bearer token (`METRICS_TOKEN`), and the request metrics.

The webhook outbox lag is not counted but read at scrape time, with one query over the pending
deliveries (their partial index), so it is right whichever process delivers. On a Citus
coordinator, so is the state of the cluster's nodes.
"""

from __future__ import annotations

import hmac
import os
from collections.abc import Iterator
from typing import Any

from django.conf import settings
from django.db import connection
from django.http import HttpRequest, HttpResponse, HttpResponseBase
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    ProcessCollector,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from billing_platform.core import errors
from billing_platform.core.metrics import (
    CONSUMES,
    REQUEST_SECONDS,
    REQUESTS,
    TENANT_CONSUMES,
    TENANT_PAYMENT_REQUIRED,
    TENANT_REQUESTS,
    tenant_label,
)
from billing_platform.core.observability import tenant_var
from billing_platform.core.problems import ProblemResponse, problem_response
from tenants.selectors import citus_cluster_health

_KNOWN_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"})
CONSUME_ROUTE = "/api/v1/billing/quota/consume"


# The labelled series of each (method, route, status) seen, looked up once: `labels()` formats
# and locks on every call, which cost more than the count itself. Bounded: routes are URL
# patterns (unmatched paths share one), methods a fixed set, statuses a few dozen.
_RequestSeries = tuple[Counter, Histogram]
_request_series: dict[tuple[str, str, int], _RequestSeries] = {}
# Outcomes are problem codes and a few words: bounded too.
_consume_series: dict[str, Counter] = {}
# Per tenant: (tenant label, status class) and (tenant label, consume outcome); the labels are
# bounded by `tenant_label`.
_tenant_series: dict[tuple[str, str], Counter] = {}
_tenant_consume_series: dict[tuple[str, str], Counter] = {}
_tenant_402_series: dict[str, Counter] = {}


def _series(method: str, route: str, status: int) -> _RequestSeries:
    series = _request_series.get((method, route, status))
    if series is None:
        series = (
            REQUESTS.labels(method=method, route=route, status=str(status)),
            REQUEST_SECONDS.labels(method=method, route=route),
        )
        _request_series[(method, route, status)] = series
    return series


def observe_request(
    request: HttpRequest, response: HttpResponseBase, *, route: str, seconds: float
) -> None:
    method = request.method if request.method in _KNOWN_METHODS else "OTHER"
    count, duration = _series(method or "OTHER", route, response.status_code)
    count.inc()
    duration.observe(seconds)
    if route == CONSUME_ROUTE and method == "POST":
        outcome = consume_outcome(response)
        consumes = _consume_series.get(outcome)
        if consumes is None:
            consumes = _consume_series[outcome] = CONSUMES.labels(outcome=outcome)
        consumes.inc()
    slug = tenant_var.get()
    if slug:
        consume = route == CONSUME_ROUTE and method == "POST"
        _observe_tenant(tenant_label(slug), response, consume=consume)


def _observe_tenant(tenant: str, response: HttpResponseBase, *, consume: bool) -> None:
    status = response.status_code
    status_class = f"{status // 100}xx"
    series = _tenant_series.get((tenant, status_class))
    if series is None:
        series = _tenant_series[(tenant, status_class)] = TENANT_REQUESTS.labels(
            tenant=tenant, status_class=status_class
        )
    series.inc()
    if status == 402:
        refused = _tenant_402_series.get(tenant)
        if refused is None:
            refused = _tenant_402_series[tenant] = TENANT_PAYMENT_REQUIRED.labels(tenant=tenant)
        refused.inc()
    if consume:
        if response.get("Idempotent-Replayed") == "true":
            outcome = "replayed"
        elif 200 <= status < 300:
            outcome = "success"
        else:
            outcome = "refused" if status == 402 else "error"
        consumes = _tenant_consume_series.get((tenant, outcome))
        if consumes is None:
            consumes = _tenant_consume_series[(tenant, outcome)] = TENANT_CONSUMES.labels(
                tenant=tenant, outcome=outcome
            )
        consumes.inc()


def consume_outcome(response: HttpResponseBase) -> str:
    if response.get("Idempotent-Replayed") == "true":
        return "replayed"
    if 200 <= response.status_code < 300:
        return "success"
    if isinstance(response, ProblemResponse):
        return response.problem_code
    return f"http_{response.status_code}"


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


class ClusterCollector(Collector):
    """On a Citus coordinator, at scrape time: whether each primary node answers, and how many
    distributed schemas (tenants, spares, the template) each holds. Nothing on plain PostgreSQL.
    The labels are the cluster's nodes: a handful, set by the operator."""

    def describe(self) -> Iterator[GaugeMetricFamily]:
        yield from self._families()

    def _families(self) -> tuple[GaugeMetricFamily, GaugeMetricFamily]:
        up = GaugeMetricFamily(
            "billable_citus_node_up",
            "1 when the coordinator can connect to the Citus node, 0 when it cannot.",
            labels=["node", "role"],
        )
        schemas = GaugeMetricFamily(
            "billable_citus_node_schemas",
            "Distributed schemas (tenants, spares, the template) placed on the Citus node.",
            labels=["node", "role"],
        )
        return up, schemas

    def collect(self) -> Iterator[GaugeMetricFamily]:
        nodes = citus_cluster_health()
        if nodes is None:
            return
        up, schemas = self._families()
        for health in nodes:
            labels = [health.node.address, health.role]
            up.add_metric(labels, 1.0 if health.reachable else 0.0)
            schemas.add_metric(labels, float(health.schemas))
        yield up
        yield schemas


_outbox = OutboxCollector()
_cluster = ClusterCollector()
if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    REGISTRY.register(_outbox)
    REGISTRY.register(_cluster)


def _registry() -> Any:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # A fresh registry per scrape, as prometheus_client's multiprocess mode asks.
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        registry.register(_outbox)
        registry.register(_cluster)
        # process_* (CPU, memory, open files) of the process that answers the scrape.
        ProcessCollector(registry=registry)
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
