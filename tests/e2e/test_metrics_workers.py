"""/metrics over the production server: counts of every gunicorn worker, JSON log lines."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.processes import Server, production_server

pytestmark = pytest.mark.e2e

TOKEN = "e2e-metrics-token-0123456789"


@pytest.fixture(scope="module")
def server(django_db_setup: None) -> Iterator[Server]:
    saved = os.environ.get("METRICS_TOKEN")
    os.environ["METRICS_TOKEN"] = TOKEN
    try:
        with production_server(workers=2) as running:
            yield running
    finally:
        if saved is None:
            os.environ.pop("METRICS_TOKEN", None)
        else:
            os.environ["METRICS_TOKEN"] = saved


def refused_count(base_url: str) -> float:
    """Requests to unknown paths (404): nothing else in this module asks for one; the start-up
    probes of /healthz may still be counted after their client timed out."""
    response = httpx.get(f"{base_url}/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 200, response.text
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            if (sample.name == "billable_http_requests_total"
                    and sample.labels.get("route") == "<unmatched>"
                    and sample.labels.get("status") == "404"):
                return sample.value
    return 0.0


def test_every_scrape_sums_the_counts_of_all_workers(server: Server) -> None:
    # given: requests spread over both workers (one connection each, several at once)
    before = refused_count(server.base_url)

    def hit(n: int) -> int:
        return httpx.get(f"{server.base_url}/no-such-page-{n}", timeout=10).status_code

    with ThreadPoolExecutor(max_workers=8) as pool:
        assert set(pool.map(hit, range(80))) == {404}

    # then: whichever worker answers the scrape, it reports all 80
    for _ in range(6):
        assert refused_count(server.base_url) == before + 80


def test_log_lines_are_json_with_the_request_id(server: Server) -> None:
    response = httpx.get(f"{server.base_url}/healthz", headers={"X-Request-ID": "e2e-log-1"})
    assert response.headers["X-Request-ID"] == "e2e-log-1"
    lines = [line for line in server.log().splitlines() if '"e2e-log-1"' in line]
    assert lines, server.log_tail()
    entry = json.loads(lines[-1])
    assert entry["request_id"] == "e2e-log-1" and entry["logger"] == "billable.access"
    assert entry["status"] == 200
