"""The Prometheus metrics every layer counts into; `billing_platform.http.metrics` serves them.

With several gunicorn workers every worker counts in its own process; prometheus_client's
multiprocess mode (`PROMETHEUS_MULTIPROC_DIR`, set up by deploy/gunicorn.conf.py) keeps the
counts in files that the scraped worker sums. Without it (one process: tests, `manage.py`
commands) the process's own registry is served.
"""

from __future__ import annotations

import logging
import os

# A process started outside gunicorn (the webhook worker) with PROMETHEUS_MULTIPROC_DIR set would
# fail on its first count if the directory did not exist yet.
if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    try:
        os.makedirs(os.environ["PROMETHEUS_MULTIPROC_DIR"], exist_ok=True)
    except OSError as _exc:
        # Never stop a command for metrics: count in this process alone and say so.
        logging.getLogger("billable.metrics").warning(
            "PROMETHEUS_MULTIPROC_DIR %s cannot be created (%s); counting in this process only",
            os.environ["PROMETHEUS_MULTIPROC_DIR"], _exc,
        )
        del os.environ["PROMETHEUS_MULTIPROC_DIR"]

from prometheus_client import Counter, Gauge, Histogram

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
    "(a schema cloned from the template, or migrated, because no spare was left).",
    ["path"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)

# --- Per tenant. The `tenant` label is a tenant's slug for at most METRICS_TENANT_LABELS tenants
# per process (the first it counts for), and "other" for the rest: a deployment with thousands of
# tenants keeps a bounded number of series. Nothing a tenant's caller sends (customers, features,
# paths) ever becomes a label.
TENANT_REQUESTS = Counter(
    "billable_tenant_requests_total",
    "API requests authenticated with a tenant's key, by tenant and status class (2xx, 4xx, 5xx).",
    ["tenant", "status_class"],
)
TENANT_CONSUMES = Counter(
    "billable_tenant_consumes_total",
    "Answers of POST /billing/quota/consume by tenant: success, replayed, refused (402) or "
    "error (any other problem).",
    ["tenant", "outcome"],
)
TENANT_PAYMENT_REQUIRED = Counter(
    "billable_tenant_payment_required_total",
    "402 answers (not enough quota, no entitlement) by tenant, on every route.",
    ["tenant"],
)
TENANT_WEBHOOK_DELIVERIES = Counter(
    "billable_tenant_webhook_deliveries_total",
    "Webhook delivery attempts by tenant and outcome: succeeded, retrying, failed, gone.",
    ["tenant", "outcome"],
)

# --- Processes: how many of each role are alive (gunicorn workers "api", "webhooks", "worker").
# In multiprocess mode each process writes its own 1 and the scrape sums the living ones.
PROCESSES = Gauge(
    "billable_processes",
    "Live processes by role: api (gunicorn workers), webhooks (webhook worker), worker "
    "(background worker).",
    ["role"],
    multiprocess_mode="livesum",
)
PROCESS_STARTED = Gauge(
    "billable_process_start_time_seconds",
    "Start time of the newest process of each role, as a Unix timestamp.",
    ["role"],
    multiprocess_mode="max",
)

OTHER_TENANTS = "other"
_tenant_labels: set[str] = set()
_tenant_label_limit: int | None = None


def tenant_label(slug: str | None) -> str:
    """The `tenant` label for a slug: itself while the process has room, else "other"."""
    global _tenant_label_limit
    if not slug:
        return OTHER_TENANTS
    if slug in _tenant_labels:
        return slug
    if _tenant_label_limit is None:
        from django.conf import settings

        _tenant_label_limit = int(getattr(settings, "METRICS_TENANT_LABELS", 50))
    if len(_tenant_labels) < _tenant_label_limit:
        _tenant_labels.add(slug)
        return slug
    return OTHER_TENANTS


def mark_process(role: str) -> None:
    """Count this process as a live one of `role` (api, webhooks, worker)."""
    PROCESSES.labels(role=role).set(1)
    PROCESS_STARTED.labels(role=role).set_to_current_time()


def process_exiting() -> None:
    """Drop this process from `billable_processes` (its live-gauge file) as it exits cleanly; the
    counters it wrote stay counted. gunicorn does this for its workers (deploy/gunicorn.conf.py)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(os.getpid())
