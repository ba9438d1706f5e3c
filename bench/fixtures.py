"""A benchmark tenant with a catalog and funded customers, made through the public API."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import httpx

from bench import harness

# Units per customer: enough that no run can drain a batch.
HOT_UNITS = 10_000_000
CUSTOMER_UNITS = 1_000_000
FEATURE = "bench_calls"


@dataclass
class Tenant:
    slug: str
    schema_name: str
    key: str


def onboard(base_url: str, platform_key: str, slug: str) -> Tenant:
    """A tenant without rate limit (the benchmarks measure the engine, not the limiter)."""
    response = httpx.post(
        f"{base_url}/api/v1/platform/tenants",
        json={"name": slug, "slug": slug, "rate_limit": "0"},
        headers={"Authorization": f"Bearer {platform_key}"},
        timeout=60,
    )
    response.raise_for_status()
    data = response.json()
    return Tenant(slug=slug, schema_name=data["tenant"]["schema_name"], key=data["api_key"])


def _post(client: httpx.Client, path: str, body: dict[str, Any]) -> dict[str, Any]:
    response = client.post(path, json=body)
    if response.status_code >= 300:
        raise SystemExit(f"POST {path}: {response.status_code} {response.text}")
    result: dict[str, Any] = response.json()
    return result


def catalog(base_url: str, tenant: Tenant) -> None:
    with httpx.Client(base_url=f"{base_url}/api/v1", headers={"X-API-Key": tenant.key},
                      timeout=30) as client:
        _post(client, "/billing/products", {
            "key": "bench", "name": "Benchmark calls", "product_type": "quantity",
            "features": [FEATURE],
        })
        for sku, units in (("bench_hot", HOT_UNITS), ("bench_one", CUSTOMER_UNITS)):
            _post(client, "/billing/offers", {
                "sku": sku, "name": sku, "price": "0.00", "currency": "USD",
                "items": [{"product": "bench", "quantity": units}],
            })


def fund(base_url: str, tenant: Tenant, customers: int) -> None:
    """Grant the hot customer and `customers` others one batch each, through the API."""
    started = time.monotonic()

    def grant(index: int) -> tuple[str, str, dict[str, Any]]:
        external_id = "hot" if index == 0 else f"c{index}"
        sku = "bench_hot" if index == 0 else "bench_one"
        return "POST", "/api/v1/billing/grants", {
            "json": {"external_id": external_id, "sku": sku, "kind": "manual"},
            "headers": {"X-API-Key": tenant.key},
        }

    run = harness.drive(base_url, grant, label="fund", concurrency=8, warmup=0, seconds=300,
                        max_requests=customers + 1, ok_statuses=frozenset({201}))
    if run.extra["total_failed"]:
        raise SystemExit(f"funding failed: {run.statuses}")
    harness.say(f"funded {customers + 1} customers in {time.monotonic() - started:.1f} s")


def grant(base_url: str, tenant: Tenant, external_ids: list[str], *,
          sku: str = "bench_one") -> None:
    """Grant each customer one batch of `sku`, through the API."""
    with httpx.Client(base_url=f"{base_url}/api/v1", headers={"X-API-Key": tenant.key},
                      timeout=30) as client:
        for external_id in external_ids:
            _post(client, "/billing/grants",
                  {"external_id": external_id, "sku": sku, "kind": "manual"})
