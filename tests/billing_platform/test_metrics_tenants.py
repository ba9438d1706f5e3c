"""Per-tenant and per-process metrics: what is counted, and that the tenant label stays bounded."""

from __future__ import annotations

import logging
import os
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.utils import timezone

from billable.models import Offer, Product
from billing_platform.core import metrics
from billing_platform.core.observability import HumanFormatter, tenant_var
from billing_platform.webhooks.delivery import Outcome
from billing_platform.webhooks.models import Delivery, Endpoint, Event
from billing_platform.webhooks.worker import Result, record_results
from tests.billing_platform.test_observability import metrics_on, scrape, value
from tests.support.api import Api
from tests.support.tenants import TenantFixture

__all__ = ["metrics_on"]  # the fixture, used by name below


def test_requests_consumes_and_402s_are_counted_per_tenant(
    api: Api, acme: TenantFixture, globex: TenantFixture,
    catalog: dict[str, Product | Offer], metrics_on: str,
) -> None:
    before = scrape(api)
    assert api.get("keys", key=acme.key).status == 200
    assert api.get("keys", key=globex.key).status == 200
    # acme: one consume refused (402), then granted and consumed, then replayed
    assert api.post("billing/quota/consume", key=acme.key,
                    json={"external_id": "t1", "feature": "reports"}).status == 402
    api.post("billing/grants", key=acme.key,
             json={"external_id": "t1", "sku": "reports_10", "kind": "manual"})
    for _ in range(2):
        assert api.post("billing/quota/consume", key=acme.key,
                        json={"external_id": "t1", "feature": "reports"},
                        headers={"Idempotency-Key": "tenant-metrics-1"}).status == 200
    after = scrape(api)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("billable_tenant_consumes_total", tenant="acme", outcome="refused") == 1
    assert delta("billable_tenant_consumes_total", tenant="acme", outcome="success") == 1
    assert delta("billable_tenant_consumes_total", tenant="acme", outcome="replayed") == 1
    assert delta("billable_tenant_payment_required_total", tenant="acme") == 1
    assert delta("billable_tenant_payment_required_total", tenant="globex") == 0
    assert delta("billable_tenant_requests_total", tenant="globex", status_class="2xx") == 1
    assert delta("billable_tenant_requests_total", tenant="acme", status_class="4xx") == 1
    # Requests without a tenant (the scrape itself, health checks) count under no tenant.
    assert not any(
        name.startswith("billable_tenant_") and dict(labels).get("tenant") in ("", "None")
        for name, labels in after
    )


def test_past_the_limit_tenants_share_the_label_other(
    api: Api, acme: TenantFixture, globex: TenantFixture, metrics_on: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # given: a process that has already given its one label to acme
    monkeypatch.setattr(metrics, "_tenant_labels", {"acme"})
    monkeypatch.setattr(metrics, "_tenant_label_limit", 1)
    before = scrape(api)

    assert api.get("keys", key=globex.key).status == 200
    assert api.get("keys", key=acme.key).status == 200

    after = scrape(api)
    other = {"tenant": "other", "status_class": "2xx"}
    assert value(after, "billable_tenant_requests_total", **other) == value(
        before, "billable_tenant_requests_total", **other) + 1
    acme_2xx = {"tenant": "acme", "status_class": "2xx"}
    assert value(after, "billable_tenant_requests_total", **acme_2xx) == value(
        before, "billable_tenant_requests_total", **acme_2xx) + 1
    assert metrics.tenant_label("yet-another") == "other"
    assert metrics._tenant_labels == {"acme"}


def test_the_label_limit_comes_from_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(metrics, "_tenant_labels", set())
    monkeypatch.setattr(metrics, "_tenant_label_limit", None)
    monkeypatch.setattr(django_settings, "METRICS_TENANT_LABELS", 2)
    labels = [metrics.tenant_label(slug) for slug in ("a", "b", "c", "a", "")]
    assert labels == ["a", "b", "other", "a", "other"]


def test_webhook_deliveries_are_counted_per_tenant(
    api: Api, acme: TenantFixture, metrics_on: str
) -> None:
    endpoint = Endpoint.objects.create(tenant=acme.tenant, url="https://example.com/hook",
                                       secret_encrypted="unused")
    event = Event.objects.create(tenant=acme.tenant, type="webhook.test", data={})
    delivery = Delivery.objects.create(event=event, endpoint=endpoint, attempts=1,
                                       next_attempt_at=timezone.now())
    before = scrape(api)

    record_results([Result(
        str(delivery.pk), delivery.locked_until, delivery.attempts,
        Outcome(status_code=204, body="", error="", duration_ms=3, retry_after=None),
        timezone.now(), "acme",
    )])

    after = scrape(api)
    labels = {"tenant": "acme", "outcome": "succeeded"}
    assert value(after, "billable_tenant_webhook_deliveries_total", **labels) == value(
        before, "billable_tenant_webhook_deliveries_total", **labels) + 1


def test_live_processes_are_counted_by_role(api: Api, db: None, metrics_on: str) -> None:
    metrics.mark_process("webhooks")
    samples = scrape(api)
    assert value(samples, "billable_processes", role="webhooks") == 1
    assert value(samples, "billable_process_start_time_seconds", role="webhooks") > 0
    # The process collector's own series are served too.
    assert any(name == "process_cpu_seconds_total" for name, _ in samples)


# --- Log lines for people


def _record(name: str, message: str, **extra: Any) -> logging.LogRecord:
    record = logging.LogRecord(name, logging.INFO, __file__, 1, message, (), None)
    for key, item in extra.items():
        setattr(record, key, item)
    return record


def test_an_access_line_for_people_names_method_path_status_time_and_tenant() -> None:
    formatter = HumanFormatter(color=False)
    token = tenant_var.set("acme")
    try:
        line = formatter.format(_record(
            "billable.access", "POST /x 402", method="POST",
            path="/api/v1/billing/quota/consume", status=402, duration_ms=3.14159,
        ))
    finally:
        tenant_var.reset(token)
    clock, rest = line.split("  ", 1)
    assert len(clock) == 8 and clock.count(":") == 2
    assert rest == "POST /api/v1/billing/quota/consume  402  3.1 ms  acme"
    assert "\033[" not in line


def test_other_records_and_colours_for_people() -> None:
    plain = HumanFormatter(color=False).format(_record("billable.worker", "built 3 spares"))
    assert plain.endswith("  INFO  billable.worker: built 3 spares")
    coloured = HumanFormatter(color=True).format(_record(
        "billable.access", "", method="GET", path="/healthz", status=503, duration_ms=1.0,
    ))
    assert "\033[31m503\033[0m" in coloured


def test_json_stays_the_default_log_format(settings: Any) -> None:
    if "LOG_FORMAT" in os.environ:
        pytest.skip("LOG_FORMAT is set in this environment")
    assert settings.LOG_FORMAT == "json"
    assert settings.LOGGING["handlers"]["console"]["formatter"] == "json"
    assert settings.LOGGING["formatters"]["plain"]["()"].endswith(".HumanFormatter")
