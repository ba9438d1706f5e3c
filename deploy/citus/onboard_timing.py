"""Time onboarding on the database of DATABASE_URL: from the spare pool, and by a clone of the
template when the pool is empty; then the migration check over every tenant schema, reading the
schemas and answered from their records. A measurement, not a test: run it on plain PostgreSQL
and on a Citus coordinator in one sitting and compare (docs/scaling.md quotes a run).

    DATABASE_URL=<a migrated scratch database> python deploy/citus/onboard_timing.py [N]

Onboards N tenants (default 5) each way through the onboarding service (no HTTP), prints each
time and the median, and leaves the tenants in place (use a scratch database).
"""

from __future__ import annotations

import logging
import os
import secrets
import statistics
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "billing_platform.settings")

import django  # noqa: E402

django.setup()
logging.disable(logging.WARNING)  # "no spare schema left; building …" is the point here

from tenants.schema_migrations import missing_migrations, tenant_schema_names  # noqa: E402
from tenants.services import spare_pool_refill, tenant_onboard  # noqa: E402


def onboard(count: int) -> list[float]:
    times = []
    for _ in range(count):
        slug = f"timing-{secrets.token_hex(4)}"
        started = time.perf_counter()
        tenant_onboard(name=slug, slug=slug, rate_limit="0")
        times.append((time.perf_counter() - started) * 1000)
    return times


def main(count: int) -> None:
    spare_pool_refill(target=count)
    spared = onboard(count)
    cloned = onboard(count)  # the pool is empty now: each one clones the template
    for label, times in (("from a spare", spared), ("by a clone", cloned)):
        print(f"onboarding {label}: median {statistics.median(times):.0f} ms "
              f"({', '.join(f'{t:.0f}' for t in times)})")
    names = tenant_schema_names()
    for label, recheck in (("reading every schema", True), ("from the records", False)):
        times = []
        for _ in range(5):
            started = time.perf_counter()
            missing_migrations(names, recheck=recheck)
            times.append((time.perf_counter() - started) * 1000)
        print(f"the migration check over {len(names)} schemas, {label}: median "
              f"{statistics.median(times):.1f} ms ({statistics.median(times) / len(names):.2f} ms "
              "per schema)")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 5)
