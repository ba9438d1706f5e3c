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

from prometheus_client import Counter, Histogram

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
