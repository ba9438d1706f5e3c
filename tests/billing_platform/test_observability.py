"""Request ids, JSON log lines with the caller, and the Prometheus metrics at /metrics."""

from __future__ import annotations

import io
import json
import logging
import re
import secrets
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from billable.models import Offer, Product
from billing_platform.core.metrics import REQUEST_SECONDS, REQUESTS
from billing_platform.core.observability import JsonFormatter
from billing_platform.operations.lifecycle import tenant_purge
from billing_platform.webhooks.delivery import Outcome
from billing_platform.webhooks.models import Delivery, Endpoint, Event
from billing_platform.webhooks.worker import record
from tenants.services import tenant_onboard
from tests.support.api import Api, assert_problem
from tests.support.tenants import TenantFixture

TOKEN = "metrics-" + "x" * 24


@pytest.fixture
def metrics_on(settings: Any) -> str:
    settings.METRICS_TOKEN = TOKEN
    return TOKEN


def scrape(api: Api) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = api.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status == 200, response.body
    assert response.content_type.startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(response.body.decode()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: dict[Any, float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


# --- /metrics access


def test_metrics_are_404_without_a_token_setting(api: Api, settings: Any) -> None:
    settings.METRICS_TOKEN = ""
    assert_problem(api.get("/metrics"), 404, "not_found")
    assert_problem(api.get("/metrics", headers={"Authorization": "Bearer anything"}), 404,
                   "not_found")


@pytest.mark.parametrize("header", [None, "Bearer wrong-token", f"Basic {TOKEN}", "Bearer "])
def test_metrics_refuse_a_missing_or_wrong_token(
    api: Api, metrics_on: str, header: str | None
) -> None:
    headers = {"Authorization": header} if header is not None else {}
    response = api.get("/metrics", headers=headers)
    assert_problem(response, 401, "not_authenticated")
    assert b"billable_http_requests_total" not in response.body


# --- Counts


def test_requests_are_counted_by_route_and_status(
    api: Api, acme: TenantFixture, metrics_on: str
) -> None:
    labels = {"method": "GET", "route": "/api/v1/keys", "status": "200"}
    before = scrape(api)
    for _ in range(3):
        assert api.get("keys", key=acme.key).status == 200
    assert api.get("keys", key="bk_nope").status == 401
    after = scrape(api)

    assert value(after, "billable_http_requests_total", **labels) == value(
        before, "billable_http_requests_total", **labels) + 3
    unauth = {**labels, "status": "401"}
    assert value(after, "billable_http_requests_total", **unauth) == value(
        before, "billable_http_requests_total", **unauth) + 1
    latency = {"method": "GET", "route": "/api/v1/keys"}
    assert value(after, "billable_http_request_duration_seconds_count", **latency) == value(
        before, "billable_http_request_duration_seconds_count", **latency) + 4
    # Unknown paths share one label instead of one per path.
    api.get(f"/no-such-page-{secrets.token_hex(4)}")
    last = scrape(api)
    assert not any("no-such-page" in str(key) for key in last)
    assert value(last, "billable_http_requests_total", method="GET", route="<unmatched>",
                 status="404") >= 1


def test_consume_outcomes_are_counted(
    api: Api, acme: TenantFixture, catalog: dict[str, Product | Offer], metrics_on: str
) -> None:
    before = scrape(api)
    assert api.post("billing/quota/consume", key=acme.key,
                    json={"external_id": "m1", "feature": "reports"}).status == 402
    api.post("billing/grants", key=acme.key,
             json={"external_id": "m1", "sku": "reports_10", "kind": "manual"})
    body = {"external_id": "m1", "feature": "reports", "amount": 2}
    for _ in range(2):
        response = api.post("billing/quota/consume", key=acme.key, json=body,
                            headers={"Idempotency-Key": "m-1"})
        assert response.status == 200
    assert api.post("billing/quota/consume", key=acme.key,
                    json={"external_id": "m1", "feature": "reports", "amount": 50}).status == 402
    after = scrape(api)

    def delta(outcome: str) -> float:
        return value(after, "billable_quota_consume_total", outcome=outcome) - value(
            before, "billable_quota_consume_total", outcome=outcome)

    assert (delta("quota_exhausted"), delta("success"), delta("replayed"),
            delta("insufficient_quota")) == (1, 1, 1, 1)


def test_webhook_delivery_outcomes_and_outbox_lag(
    api: Api, acme: TenantFixture, metrics_on: str
) -> None:
    # given: two pending deliveries, one of them due two minutes ago
    endpoint = Endpoint.objects.create(tenant=acme.tenant, url="https://example.com/hook",
                                       secret_encrypted="unused")
    event = Event.objects.create(tenant=acme.tenant, type="webhook.test", data={})
    overdue = Delivery.objects.create(event=event, endpoint=endpoint, attempts=1,
                                      next_attempt_at=timezone.now() - timedelta(minutes=2))
    other = Delivery.objects.create(event=event, endpoint=endpoint, attempts=1,
                                    next_attempt_at=timezone.now() + timedelta(hours=1))
    before = scrape(api)
    assert value(before, "billable_webhook_outbox_pending") == Delivery.objects.filter(
        status="pending").count() >= 2
    assert value(before, "billable_webhook_outbox_lag_seconds") >= 100
    assert value(before, "billable_webhook_outbox_oldest_pending_age_seconds") >= 0

    # when: one attempt fails (a retry is left), the other succeeds
    record(overdue, Outcome(status_code=500, body="", error="", duration_ms=5, retry_after=None))
    record(other, Outcome(status_code=204, body="", error="", duration_ms=5, retry_after=None))
    after = scrape(api)

    # then
    def delta(outcome: str) -> float:
        return value(after, "billable_webhook_deliveries_total", outcome=outcome) - value(
            before, "billable_webhook_deliveries_total", outcome=outcome)

    assert (delta("retrying"), delta("succeeded"), delta("failed")) == (1, 1, 0)
    assert value(after, "billable_webhook_outbox_pending") == value(
        before, "billable_webhook_outbox_pending") - 1
    assert value(after, "billable_webhook_outbox_lag_seconds") < 100


def test_onboarding_time_is_observed(api: Api, committed: None, metrics_on: str) -> None:
    def onboardings(samples: dict[Any, float]) -> float:
        return sum(value(samples, "billable_tenant_onboarding_seconds_count", path=path)
                   for path in ("spare", "build"))

    before = onboardings(scrape(api))
    tenant, _key, _raw = tenant_onboard(name="Timed", slug=f"timed-{secrets.token_hex(4)}")
    try:
        assert onboardings(scrape(api)) == before + 1
    finally:
        tenant_purge(tenant=tenant)


def test_a_known_series_is_counted_without_a_label_lookup(
    api: Api, db: None, metrics_on: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    labels = {"method": "GET", "route": "/healthz", "status": "200"}
    assert api.get("/healthz").status == 200  # the series is looked up once
    before = scrape(api)

    def no_lookup(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("labels() looked up again")

    monkeypatch.setattr(REQUESTS, "labels", no_lookup)
    monkeypatch.setattr(REQUEST_SECONDS, "labels", no_lookup)
    for _ in range(3):
        assert api.get("/healthz").status == 200
    monkeypatch.undo()

    after = scrape(api)
    assert value(after, "billable_http_requests_total", **labels) == value(
        before, "billable_http_requests_total", **labels) + 3


# --- Request ids and JSON logs


@pytest.fixture
def json_lines() -> Iterator[io.StringIO]:
    """What the configured JSON formatter writes for the access logger during the test."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("billable.access")
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.INFO)
    try:
        yield stream
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def test_a_log_line_carries_request_id_tenant_and_key_id_never_the_key(
    api: Api, acme: TenantFixture, json_lines: io.StringIO
) -> None:
    response = api.get("keys", key=acme.key, headers={"X-Request-ID": "req-42.abc"})
    assert response.status == 200
    assert response.headers["X-Request-ID"] == "req-42.abc"

    text = json_lines.getvalue()
    lines = [json.loads(line) for line in text.splitlines()]
    assert len(lines) == 1
    line = lines[0]
    assert line["request_id"] == "req-42.abc"
    assert line["tenant"] == "acme"
    assert line["api_key_id"] == str(acme.key_row.pk)
    assert (line["status"], line["route"], line["method"]) == (200, "/api/v1/keys", "GET")
    assert line["level"] == "INFO" and line["logger"] == "billable.access"
    assert acme.key not in text
    assert acme.key.rsplit("_", 1)[-1] not in text


def test_below_info_no_access_line_is_made(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    logger = logging.getLogger("billable.access")

    def no_line(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("an access line was made")

    monkeypatch.setattr(logger, "info", no_line)
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        response = api.get("/healthz", headers={"X-Request-ID": "quiet-1"})
    finally:
        logger.setLevel(level)
    assert response.status == 200 and response.headers["X-Request-ID"] == "quiet-1"


@pytest.mark.parametrize("incoming", [None, "", "has space", "x" * 200, "new\nline", "é"])
def test_an_insane_request_id_is_replaced(
    api: Api, incoming: str | None, json_lines: io.StringIO
) -> None:
    headers = {"X-Request-ID": incoming} if incoming is not None else {}
    response = api.get("/healthz", headers=headers)
    request_id = response.headers["X-Request-ID"]
    assert re.fullmatch(r"[0-9a-f]{32}", request_id)
    line = json.loads(json_lines.getvalue().splitlines()[-1])
    assert line["request_id"] == request_id
    assert "tenant" not in line and "api_key_id" not in line


def test_records_outside_a_request_have_no_request_context(acme: TenantFixture) -> None:
    record_ = logging.LogRecord("billable.x", logging.WARNING, __file__, 1, "hello %s",
                                ("there",), None)
    line = json.loads(JsonFormatter().format(record_))
    assert line["message"] == "hello there" and line["level"] == "WARNING"
    assert "request_id" not in line
    assert connection.schema_name == "public"
