"""routing: what resolving an API key to its tenant costs, warm (cached in Redis).

In process: `tenants.resolution.resolve` on a warm key, timed, with the SQL it issues counted (none
expected). Through the server, one client at a time: `GET /healthz` (no key, no tenant) against
`GET /api/v1/settings` (key resolved, schema selected, a small read).
"""

from __future__ import annotations

import time
from typing import Any

from bench import fixtures, harness
from bench.context import Context

CALLS = 2000


def run(ctx: Context) -> dict[str, Any]:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from tenants.resolution import resolve

    base = ctx.server.base_url
    tenant = fixtures.onboard(base, ctx.platform_key, "routing")
    resolve(tenant.key)  # warm the cache
    timings: list[float] = []
    with CaptureQueriesContext(connection) as captured:
        for _ in range(CALLS):
            began = time.perf_counter()
            resolve(tenant.key)
            timings.append((time.perf_counter() - began) * 1000)
    warm_queries = len(captured.captured_queries) / CALLS
    resolve_p50 = round(harness.percentile(timings, 50), 3)
    resolve_p99 = round(harness.percentile(timings, 99), 3)

    health = harness.drive(base, lambda i: ("GET", "/healthz", {}), label="healthz",
                           concurrency=1)
    keyed = harness.drive(
        base, lambda i: ("GET", "/api/v1/settings", {"headers": {"X-API-Key": tenant.key}}),
        label="settings", concurrency=1,
    )
    added = round(keyed.p50_ms - health.p50_ms, 2)
    result = {
        "resolve": {"calls": CALLS, "p50_ms": resolve_p50, "p99_ms": resolve_p99,
                    "sql_per_warm_lookup": warm_queries},
        "healthz": health.as_dict(),
        "keyed": keyed.as_dict(),
        "keyed_minus_healthz_p50_ms": added,
        "correct": keyed.errors == 0 and health.errors == 0,
    }
    print(harness.table(
        "routing (warm key; one client)",
        ["measure", "p50 ms", "p99 ms", "req/s", "SQL"],
        [
            ["resolve(key), in process", resolve_p50, resolve_p99, "-", warm_queries],
            ["GET /healthz (baseline)", health.p50_ms, health.p99_ms, health.rps, 0],
            ["GET /api/v1/settings (key)", keyed.p50_ms, keyed.p99_ms, keyed.rps, "-"],
        ],
    ))
    return result
