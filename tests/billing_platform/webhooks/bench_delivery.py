"""Benchmark (not collected by default): commit-to-receiver latency and one worker's throughput.

    TEST_DATABASE_NAME=test_billable_wh .venv/bin/python -m billing_platform.launcher exec -- \
        .venv/bin/python -m pytest -q -s tests/billing_platform/webhooks/bench_delivery.py

Prints a table and writes var/bench/webhooks.json.
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.db import connection

from billing_platform.webhooks import services
from billing_platform.webhooks.models import Delivery, Endpoint
from tests.billing_platform.webhooks.processes import (
    FreshTenant,
    fresh_tenant,
    wait_until,
    webhook_worker,
)
from tests.billing_platform.webhooks.receiver import running_receiver
from tests.conftest import Api

EVENTS = 200
THROUGHPUT_EVENTS = 2000


def test_the_module_runs_on_the_test_database(db: None) -> None:
    assert str(connection.settings_dict["NAME"]).startswith("test_")


@pytest.fixture
def tenant(committed: None, settings: Any) -> Iterator[FreshTenant]:
    settings.WEBHOOKS_ALLOW_PRIVATE_NETWORKS = True
    with fresh_tenant("whb") as fresh:
        yield fresh


def _pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def test_latency_and_throughput(api: Api, tenant: FreshTenant) -> None:
    results: dict[str, Any] = {}
    with running_receiver() as receiver:
        created = api.post("webhooks/endpoints", json={"url": receiver.url,
                                                       "event_types": ["quota.consumed"]},
                           key=tenant.key)
        endpoint_id = created.json["id"]
        api.post("billing/grants", json={"external_id": "b1", "sku": "reports_1000",
                                         "kind": "bonus"}, key=tenant.key)
        with webhook_worker(threads=8, poll=1.0, lease_seconds=60):
            committed_at: dict[str, float] = {}
            for _ in range(EVENTS):
                response = api.post("billing/quota/consume",
                                    json={"external_id": "b1", "feature": "reports"},
                                    key=tenant.key)
                # the request's transaction has committed when the answer is back
                committed_at[response.json["usage_id"]] = time.time()
                time.sleep(0.01)
            receiver.wait_for(EVENTS, timeout=60)
        latencies = []
        for request in receiver.requests:
            usage_id = json.loads(request.body)["data"]["usage_id"]
            latencies.append((request.received_at - committed_at[usage_id]) * 1000)
        results["latency_ms"] = {
            "events": len(latencies),
            "p50": round(statistics.median(latencies), 1),
            "p90": round(_pct(latencies, 90), 1),
            "p99": round(_pct(latencies, 99), 1),
            "max": round(max(latencies), 1),
        }

        # throughput: a backlog of deliveries, one worker with 8 threads
        receiver.requests.clear()
        endpoint = Endpoint.objects.get(pk=endpoint_id)
        for _ in range(THROUGHPUT_EVENTS):
            services.endpoint_test(endpoint=endpoint)
        with webhook_worker(threads=8, poll=1.0, lease_seconds=60):
            started = time.monotonic()
            wait_until(
                lambda: not Delivery.objects.filter(endpoint_id=endpoint_id,
                                                    status="pending").exists(),
                timeout=300,
            )
            elapsed = time.monotonic() - started
        assert receiver.count() == THROUGHPUT_EVENTS
        results["throughput"] = {
            "deliveries": THROUGHPUT_EVENTS,
            "seconds": round(elapsed, 2),
            "per_second": round(THROUGHPUT_EVENTS / elapsed, 1),
            "threads": 8,
        }
    print("\nwebhooks benchmark")
    for section, values in results.items():
        print(f"  {section}: " + ", ".join(f"{k}={v}" for k, v in values.items()))
    out = Path(__file__).resolve().parents[3] / "var" / "bench" / "webhooks.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
