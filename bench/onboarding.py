"""onboarding: tenant creation through the platform API at 0, 100 and 300 existing tenants.

First a burst: 20 back-to-back onboardings right after start-up, as `make run` leaves the
platform (the template schema built by `migrate_schemas`, the worker running and the pool at
`TENANT_SPARE_SCHEMAS`): the pool empties, later tenants are cloned from the template, and the
worker refills the pool as each spare is claimed (NOTIFY).

Billable claims a pre-built spare schema (the pool is filled before each level, as the
background worker keeps it filled); the baseline is django-tenants' default, a schema built by
migrations. Existing tenants are copies of one migrated schema (one `pg_dump`, replayed under
new names), which keeps set-up short. Then `migrate_schemas` over all of them: nothing to
do (Billable's command, which skips current schemas, against django-tenants' `--all-schemas`)
and one new migration (the last billable migration rolled back everywhere, then applied).
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import time
from typing import Any

import httpx

from bench import harness
from bench.context import Context

BURST = 20
LEVELS = (0, 100, 300)
PER_LEVEL = 10
BASELINE_PER_LEVEL = 3
WARMUP_TENANTS = 4
COPIES_PER_TRANSACTION = 10
TEMPLATE_SLUG = "bench-clone-source"
TEMPLATE = "t_bench_clone_source"


def _tenant_count() -> int:
    from tenants.models import Tenant, TenantStatus

    return Tenant.objects.exclude(status=TenantStatus.SPARE).count()


def _pg_tool(name: str) -> str:
    found = shutil.which(name) or next(iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))),
                                       None)
    if not found:
        raise SystemExit(f"{name} is missing: install postgresql-client (Debian).")
    return found


def _grow_to(ctx: Context, level: int, counter: list[int]) -> None:
    """Add tenants until `level` exist: copies of one migrated schema, migrations recorded.

    The copies are made from one `pg_dump` of that schema, replayed under new names in one
    transaction (a few seconds for hundreds of schemas).
    """
    from tenants.models import Tenant
    from tenants.services import _build_schema

    missing = level - _tenant_count()
    if missing <= 0:
        return
    if not Tenant.objects.filter(schema_name=TEMPLATE).exists():
        _build_schema(slug=TEMPLATE_SLUG, name="copy source", rate_limit="0")
        missing -= 1
    started = time.monotonic()
    params = harness.pg_params(ctx.url)
    env = dict(os.environ, PGPASSWORD=params["password"])
    connect = ["-h", params["host"], "-p", params["port"], "-U", params["user"]]
    dump = subprocess.run(
        [_pg_tool("pg_dump"), *connect, "--no-owner", "--no-privileges", "-n", TEMPLATE,
         params["dbname"]],
        capture_output=True, text=True, env=env, check=True,
    ).stdout
    copies: list[str] = []
    rows: list[Any] = []
    for _ in range(missing):
        counter[0] += 1
        schema = f"t_existing_{counter[0]:04d}"
        copies.append(dump.replace(TEMPLATE, schema))
        rows.append(Tenant(slug=f"existing-{counter[0]:04d}", name=schema, schema_name=schema))
    # A few schemas per transaction: one transaction for all would exceed the lock table.
    for first in range(0, len(copies), COPIES_PER_TRANSACTION):
        subprocess.run(
            [_pg_tool("psql"), *connect, "-q", "-1", "-v", "ON_ERROR_STOP=1", "-d",
             params["dbname"]],
            input="\n".join(copies[first:first + COPIES_PER_TRANSACTION]), text=True, env=env,
            check=True, stdout=subprocess.DEVNULL,
        )
    Tenant.objects.bulk_create(rows)
    harness.say(f"copied {missing} tenant schemas in {time.monotonic() - started:.1f} s")


def _manage(ctx: Context, *args: str) -> float:
    began = time.perf_counter()
    subprocess.run([harness.PYTHON, str(harness.ROOT / "manage.py"), *args], env=ctx.env,
                   cwd=harness.ROOT, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - began


def _spares() -> int:
    from tenants.models import Tenant, TenantStatus

    return Tenant.objects.filter(status=TenantStatus.SPARE).count()


def _burst(ctx: Context, base: str) -> dict[str, Any]:
    """BURST back-to-back onboardings with the worker running and the pool as start-up left it."""
    from django.conf import settings

    pool = settings.TENANT_SPARE_SCHEMAS
    worker = harness.spawn([harness.PYTHON, str(harness.ROOT / "manage.py"), "run_worker"],
                           ctx.env, harness.ROOT / "var" / "bench-worker.log")
    try:
        deadline = time.monotonic() + 120
        while _spares() < pool:
            if time.monotonic() > deadline:
                raise SystemExit("the worker did not fill the spare pool within 120 s")
            time.sleep(0.1)
        burst_ms: list[float] = []
        with httpx.Client(base_url=base, timeout=120,
                          headers={"Authorization": f"Bearer {ctx.platform_key}"}) as client:
            for index in range(BURST):
                slug = f"burst-{index:03d}"
                began = time.perf_counter()
                response = client.post("/api/v1/platform/tenants",
                                       json={"name": slug, "slug": slug})
                burst_ms.append((time.perf_counter() - began) * 1000)
                if response.status_code != 201:
                    raise SystemExit(f"onboarding answered {response.status_code}: "
                                     f"{response.text}")
        time.sleep(1.0)
        refilled = _spares()
    finally:
        harness.stop(worker)
    return {"pool": pool, "onboardings": BURST, "ms": [round(v, 1) for v in burst_ms],
            "p50_ms": round(harness.percentile(burst_ms, 50), 1),
            "max_ms": round(max(burst_ms), 1), "spares_after": refilled}


def _build_ms(slugs: list[str], *, template: bool) -> list[float]:
    """Onboarding's path when no spare is left, timed in process: clone, or migrations."""
    from django.test import override_settings

    from tenants.services import _build_schema

    times: list[float] = []
    with override_settings(**({} if template else {"TENANT_BASE_SCHEMA": ""})):
        for slug in slugs:
            began = time.perf_counter()
            _build_schema(slug=slug, name=slug, rate_limit="600/m")
            times.append((time.perf_counter() - began) * 1000)
    return times


def run(ctx: Context) -> dict[str, Any]:
    from tenants.services import spare_pool_refill

    base = ctx.server.base_url
    counter = [0]
    levels: list[dict[str, Any]] = []
    rows: list[list[Any]] = []
    made = 0
    clone_ms: list[float] = []
    burst = _burst(ctx, base)
    harness.say(f"burst of {BURST}: p50 {burst['p50_ms']} ms, max {burst['max_ms']} ms")
    # Warm-up: each server worker answers its first requests slower (imports, connections).
    spare_pool_refill(target=WARMUP_TENANTS)
    with httpx.Client(base_url=base, timeout=120,
                      headers={"Authorization": f"Bearer {ctx.platform_key}"}) as client:
        for index in range(WARMUP_TENANTS):
            client.post("/api/v1/platform/tenants",
                        json={"name": "warm-up", "slug": f"warm-up-{index}"}).raise_for_status()
    for level in LEVELS:
        _grow_to(ctx, level, counter)
        existing = _tenant_count()
        spare_pool_refill(target=PER_LEVEL)
        api_ms: list[float] = []
        with httpx.Client(base_url=base, timeout=120,
                          headers={"Authorization": f"Bearer {ctx.platform_key}"}) as client:
            for _ in range(PER_LEVEL):
                made += 1
                slug = f"onboarded-{made:03d}"
                began = time.perf_counter()
                response = client.post("/api/v1/platform/tenants",
                                       json={"name": slug, "slug": slug})
                api_ms.append((time.perf_counter() - began) * 1000)
                if response.status_code != 201:
                    raise SystemExit(f"onboarding answered {response.status_code}: "
                                     f"{response.text}")
        slugs = [f"migrated-{made + i + 1:03d}" for i in range(BASELINE_PER_LEVEL)]
        made += BASELINE_PER_LEVEL
        baseline_ms = _build_ms(slugs, template=False)
        if not levels:
            slugs = [f"cloned-{made + i + 1:03d}" for i in range(BASELINE_PER_LEVEL)]
            made += BASELINE_PER_LEVEL
            clone_ms = _build_ms(slugs, template=True)
        api_p50 = round(harness.percentile(api_ms, 50), 1)
        base_p50 = round(harness.percentile(baseline_ms, 50), 1)
        levels.append({"existing_tenants": existing, "api_ms": [round(v, 1) for v in api_ms],
                       "api_p50_ms": api_p50, "api_p99_ms": round(max(api_ms), 1),
                       "baseline_ms": [round(v, 1) for v in baseline_ms],
                       "baseline_p50_ms": base_p50, "ratio": harness.ratio(api_p50, base_p50)})
        rows.append([existing, api_p50, round(max(api_ms), 1), base_p50,
                     f"{harness.ratio(api_p50, base_p50):.1%}"])
        harness.say(f"onboarding at {existing} tenants: p50 {api_p50} ms "
                    f"(by migrations {base_p50} ms)")
    print(harness.table(
        f"onboarding through POST /api/v1/platform/tenants ({PER_LEVEL} per level)",
        ["existing tenants", "p50 ms", "max ms", "by migrations p50 ms", "ratio"], rows,
    ))
    full_p50 = levels[0]["api_p50_ms"]
    migrations_p50 = levels[0]["baseline_p50_ms"]
    burst.update(
        full_pool_p50_ms=full_p50, by_migrations_p50_ms=migrations_p50,
        clone_p50_ms=round(harness.percentile(clone_ms, 50), 1),
        ratio_to_full_pool=round(burst["p50_ms"] / full_p50, 2),
        ratio_to_migrations=harness.ratio(burst["p50_ms"], migrations_p50),
    )
    print(harness.table(
        f"burst: {BURST} back-to-back onboardings after start-up (pool of {burst['pool']}, "
        "worker running)",
        ["burst p50 ms", "burst max ms", "full pool p50 ms", "clone (no spare) p50 ms",
         "by migrations p50 ms", "burst / full pool", "burst / migrations"],
        [[burst["p50_ms"], burst["max_ms"], full_p50, burst["clone_p50_ms"], migrations_p50,
          f"{burst['ratio_to_full_pool']}x", f"{burst['ratio_to_migrations']:.1%}"]],
    ))

    from django.db.migrations.loader import MigrationLoader

    schemas = _tenant_count()
    noop = _manage(ctx, "migrate_schemas", "--noinput", "-v", "0")
    noop_all = _manage(ctx, "migrate_schemas", "--all-schemas", "--noinput", "-v", "0")
    leaves = MigrationLoader(None, ignore_no_migrations=True).graph.leaf_nodes("billable")
    last = leaves[0][1]
    previous = sorted(
        name for app, name in MigrationLoader(None).graph.nodes
        if app == "billable" and name < last
    )[-1]
    rollback = _manage(ctx, "migrate_schemas", "--tenant", "billable", previous, "--noinput",
                       "-v", "0")
    forward = _manage(ctx, "migrate_schemas", "--noinput", "-v", "0")
    migrate = {
        "tenant_schemas": schemas,
        "nothing_to_do_seconds": round(noop, 2),
        "nothing_to_do_all_schemas_seconds": round(noop_all, 2),
        "nothing_to_do_ms_per_schema": round(noop / schemas * 1000, 2),
        "all_schemas_ms_per_schema": round(noop_all / schemas * 1000, 2),
        "new_migration": f"billable.{last}",
        "new_migration_seconds": round(forward, 2),
        "new_migration_ms_per_schema": round(forward / schemas * 1000, 2),
        "rollback_seconds": round(rollback, 2),
        "ratio": harness.ratio(noop, noop_all),
    }
    print(harness.table(
        f"migrate_schemas over {schemas} tenant schemas",
        ["run", "seconds", "ms per schema"],
        [
            ["nothing to do (skips current)", migrate["nothing_to_do_seconds"],
             migrate["nothing_to_do_ms_per_schema"]],
            ["nothing to do, --all-schemas (django-tenants)",
             migrate["nothing_to_do_all_schemas_seconds"], migrate["all_schemas_ms_per_schema"]],
            [f"one new migration ({last})", migrate["new_migration_seconds"],
             migrate["new_migration_ms_per_schema"]],
        ],
    ))
    return {"levels": levels, "burst": burst, "migrate_schemas": migrate, "correct": True}
