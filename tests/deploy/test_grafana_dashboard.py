"""deploy/grafana/billable-dashboard.json queries only the metrics /metrics really serves."""

from __future__ import annotations

import json
import re
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, ProcessCollector

from billing_platform.http.metrics import ClusterCollector, OutboxCollector
from tests.support import ROOT

DASHBOARD = ROOT / "deploy" / "grafana" / "billable-dashboard.json"
# A metric name in PromQL: not a function, keyword or label (those are followed by "(" or are
# inside {...} or by (...)); names here all start with one of these prefixes.
_METRIC = re.compile(r"\b((?:billable|process)_[a-z0-9_]+)\b")
_SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "gauge": ("",),
    "summary": ("_count", "_sum", "_created", ""),
    "unknown": ("",),
}


def served_names() -> set[str]:
    """Every sample name the application's registry (the outbox collector's query included),
    the scrape-time collectors (the Citus one serves its families on a coordinator only) and the
    process collector of a multiprocess scrape can give."""
    extra = CollectorRegistry()
    ProcessCollector(registry=extra)
    families = list(REGISTRY.collect()) + list(extra.collect())
    for collector in (OutboxCollector(), ClusterCollector()):
        families += list(collector.describe())
    names = set()
    for family in families:
        for suffix in _SUFFIXES.get(family.type, ("",)):
            names.add(family.name + suffix)
        names.update(sample.name for sample in family.samples)
    return names


def panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    found = []
    for panel in dashboard["panels"]:
        found.append(panel)
        found.extend(panel.get("panels", []))
    return found


def expressions(dashboard: dict[str, Any]) -> list[str]:
    exprs = [target["expr"] for panel in panels(dashboard) for target in panel.get("targets", [])]
    for variable in dashboard["templating"]["list"]:
        query = variable.get("query")
        if isinstance(query, dict):
            exprs.append(query["query"])
    return exprs


def test_the_dashboard_queries_only_metrics_the_code_exports(db: None) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    served = served_names()
    # The scan sees what it must: the per-tenant families and a histogram's buckets.
    assert {"billable_tenant_requests_total", "billable_http_request_duration_seconds_bucket",
            "billable_webhook_outbox_pending", "process_resident_memory_bytes"} <= served

    used = {name for expr in expressions(dashboard) for name in _METRIC.findall(expr)}

    assert used, "no metric found in the dashboard"
    assert used <= served, f"not exported: {sorted(used - served)}"
    # Built from them: every billable family is on the dashboard.
    families = {
        name for name in served if name.startswith("billable_") and not name.endswith("_created")
    }
    base = {re.sub(r"_(total|bucket|count|sum)$", "", name) for name in families}
    missing = {name for name in base if not any(u.startswith(name) for u in used)}
    assert not missing, f"on /metrics but not on the dashboard: {sorted(missing)}"


def test_the_dashboard_is_importable_grafana_json() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] and dashboard["title"] == "Billable"
    ids = [panel["id"] for panel in panels(dashboard)]
    assert len(ids) == len(set(ids))
    variables = {variable["name"] for variable in dashboard["templating"]["list"]}
    assert {"datasource", "tenant"} <= variables
    for panel in panels(dashboard):
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert panel["targets"], panel["title"]
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
    # Panels do not overlap.
    cells: set[tuple[int, int]] = set()
    for panel in panels(dashboard):
        grid = panel["gridPos"]
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                assert (x, y) not in cells, panel["title"]
                cells.add((x, y))
