"""onboarding: tenant creation through the platform API at 0, 100 and 300 existing tenants.

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


def run(ctx: Context) -> dict[str, Any]:
    from tenants.services import _build_schema, spare_pool_refill

    base = ctx.server.base_url
    counter = [0]
    levels: list[dict[str, Any]] = []
    rows: list[list[Any]] = []
    made = 0
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
        baseline_ms: list[float] = []
        for _ in range(BASELINE_PER_LEVEL):
            made += 1
            slug = f"migrated-{made:03d}"
            began = time.perf_counter()
            _build_schema(slug=slug, name=slug, rate_limit="600/m")
            baseline_ms.append((time.perf_counter() - began) * 1000)
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
    return {"levels": levels, "migrate_schemas": migrate, "correct": True}
