"""console: the tenant console's customer page and overview on a big tenant, through the server.

One tenant of its own with 10,000 customers (an identity and a batch each) and 1,000,000 ledger
entries: a credit per batch and 990,000 debits, each with its usage, spread over the last 90
days and three features; 20,000 orders in two currencies. The rows are written in SQL
(generate_series), each batch's `remaining` set to what its ledger says, then the tables are
vacuumed and analysed, as autovacuum would have done over those 90 days.

An owner signs in through the console's own form (CSRF token and session cookie, as a browser
does), then, at 1 and 4 clients: `GET /healthz` (the baseline: no session, no tenant, no
template), a customer's page (its balances, batches, usages, orders and the first 25 of its 100
ledger entries) and the overview (the chart's past days come from the cache after the first
view; one cold view is timed apart). The target is a p50 under 100 ms at one client.
"""

from __future__ import annotations

import re
import time
from typing import Any

import httpx

from bench import fixtures, harness
from bench.context import Context

CUSTOMERS = 10_000
LEDGER_ENTRIES = 1_000_000
ORDERS = 20_000
DAYS = 90
FEATURES = (fixtures.FEATURE, "export", "search")
CONCURRENCY = (1, 4)
TARGET_P50_MS = 100.0
EMAIL = "owner@bench.example.com"
PASSWORD = "bench-console-lantern-7"


def _fill(ctx: Context, schema: str) -> None:
    """Customers, identities, batches, the ledger with its usages, and orders, in SQL."""
    s = f'"{schema}"'
    started = time.monotonic()
    ctx.sql(
        f"INSERT INTO {s}.billable_customer (id, metadata, created_at)"
        " SELECT gen_random_uuid(), '{}'::jsonb, now() - (%s - g) * interval '13 minutes'"
        " FROM generate_series(1, %s) g",
        [CUSTOMERS, CUSTOMERS],
    )
    ctx.sql(
        f"INSERT INTO {s}.billable_externalidentity (customer_id, provider, external_id,"
        " created_at) SELECT id, 'default', 'c' || row_number() OVER (ORDER BY created_at, id),"
        f" created_at FROM {s}.billable_customer"
    )
    debits_per_customer = (LEDGER_ENTRIES - CUSTOMERS) // CUSTOMERS
    ctx.sql(
        f"INSERT INTO {s}.billable_quotabatch (id, customer_id, product_id, initial, remaining,"
        " valid_from, expires_at, state, source, created_at)"
        " SELECT gen_random_uuid(), c.id, p.id, %s, %s, c.created_at, NULL, 'active',"
        f" 'manual', c.created_at FROM {s}.billable_customer c, {s}.billable_product p"
        " WHERE upper(p.key) = 'BENCH'",
        [fixtures.CUSTOMER_UNITS, fixtures.CUSTOMER_UNITS],
    )
    ctx.sql(
        f"INSERT INTO {s}.billable_ledgerentry (batch_id, direction, amount, action_type,"
        " action_id, actor, usage_id, hold_id, metadata, created_at)"
        " SELECT id, 'credit', initial, 'grant', '', 'bench', NULL, NULL, '{}'::jsonb,"
        f" created_at FROM {s}.billable_quotabatch ORDER BY created_at"
    )
    # Debits: customer n gets every CUSTOMERS-th row; a debit per usage, same time and amount.
    ctx.sql(
        f"""
        WITH batches AS (
            SELECT array_agg(id ORDER BY created_at, id) AS ids,
                   array_agg(customer_id ORDER BY created_at, id) AS customers
            FROM {s}.billable_quotabatch
        ), rows AS (
            SELECT g, b.ids[1 + g %% %s] AS batch_id, b.customers[1 + g %% %s] AS customer_id,
                   (%s::text[])[1 + (g / 7) %% 3] AS feature, 1 + g %% 5 AS amount,
                   now() - random() * interval '{DAYS} days' AS created_at
            FROM generate_series(1, %s) g, batches b
        ), used AS (
            INSERT INTO {s}.billable_usage (id, customer_id, feature, amount, credits,
                action_type, action_id, metadata, created_at)
            SELECT gen_random_uuid(), customer_id, feature, amount, amount, 'bench', '',
                   '{{}}'::jsonb, created_at
            FROM rows
            RETURNING id, customer_id, amount, created_at
        )
        INSERT INTO {s}.billable_ledgerentry (batch_id, direction, amount, action_type,
            action_id, actor, usage_id, hold_id, metadata, created_at)
        SELECT b.id, 'debit', used.amount, 'usage', '', 'bench', used.id, NULL, '{{}}'::jsonb,
               used.created_at
        FROM used JOIN {s}.billable_quotabatch b ON b.customer_id = used.customer_id
        ORDER BY used.created_at
        """,
        [CUSTOMERS, CUSTOMERS, list(FEATURES), debits_per_customer * CUSTOMERS],
    )
    ctx.sql(
        f"UPDATE {s}.billable_quotabatch b SET remaining = b.initial - d.spent FROM ("
        f" SELECT batch_id, sum(amount) AS spent FROM {s}.billable_ledgerentry"
        " WHERE direction = 'debit' GROUP BY batch_id) d WHERE d.batch_id = b.id"
    )
    ctx.sql(
        f"INSERT INTO {s}.billable_order (id, customer_id, status, total, currency, payment_id,"
        " payment_method, metadata, reason, created_at, paid_at)"
        " SELECT gen_random_uuid(), c.customers[1 + g %% %s],"
        " CASE WHEN g %% 4 = 0 THEN 'pending' ELSE 'paid' END,"
        " (5 + g %% 20)::numeric, CASE WHEN g %% 3 = 0 THEN 'EUR' ELSE 'USD' END,"
        " CASE WHEN g %% 4 = 0 THEN NULL ELSE 'pay_' || g END, '', '{}'::jsonb, '', t, t"
        f" FROM generate_series(1, %s) g, (SELECT array_agg(id) AS customers"
        f" FROM {s}.billable_customer) c,"
        f" LATERAL (SELECT now() - random() * interval '{DAYS} days' AS t) w",
        [CUSTOMERS, ORDERS],
    )
    tables = ("customer", "externalidentity", "quotabatch", "ledgerentry", "usage", "order")
    for table in tables:
        ctx.sql(f"VACUUM ANALYZE {s}.billable_{table}")
    entries, usages, mismatched = ctx.sql(
        f"""
        SELECT (SELECT count(*) FROM {s}.billable_ledgerentry),
               (SELECT count(*) FROM {s}.billable_usage),
               (SELECT count(*) FROM {s}.billable_quotabatch b WHERE b.remaining <> (
                    SELECT sum(CASE WHEN e.direction = 'credit' THEN e.amount ELSE -e.amount END)
                    FROM {s}.billable_ledgerentry e WHERE e.batch_id = b.id))
        """
    )[0]
    if entries != LEDGER_ENTRIES or mismatched:
        raise SystemExit(f"the console tenant is off: {entries} ledger entries, {mismatched} "
                         "batches that differ from their ledger")
    harness.say(f"console tenant: {CUSTOMERS:,} customers, {entries:,} ledger entries, "
                f"{usages:,} usages, {ORDERS:,} orders in {time.monotonic() - started:.0f} s")


def _owner(slug: str) -> None:
    """An owner of the tenant, as accepting an invitation makes one."""
    from django.contrib.auth.models import User

    from billing_platform.console.models import Membership, Role
    from tenants.models import Tenant

    user = User.objects.filter(username=EMAIL).first() or User.objects.create_user(
        EMAIL, EMAIL, PASSWORD
    )
    Membership.objects.get_or_create(
        user=user, tenant=Tenant.objects.get(slug=slug), defaults={"role": Role.OWNER}
    )


def _sign_in(base: str) -> str:
    """Sign in through the console's form; the session's Cookie header."""
    with httpx.Client(base_url=base, timeout=30) as client:
        page = client.get("/console/login/")
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)
        if token is None:
            raise SystemExit("the sign-in page has no CSRF token")
        answer = client.post(
            "/console/login/",
            data={"email": EMAIL, "password": PASSWORD, "csrfmiddlewaretoken": token.group(1)},
            headers={"Referer": f"{base}/console/login/"},
        )
        if answer.status_code != 302 or "sessionid" not in client.cookies:
            raise SystemExit(f"signing in failed: {answer.status_code} {answer.text[:300]}")
        return "; ".join(f"{name}={value}" for name, value in client.cookies.items())


def run(ctx: Context) -> dict[str, Any]:
    base = ctx.server.base_url
    tenant = fixtures.onboard(base, ctx.platform_key, "console")
    fixtures.catalog(base, tenant)
    _fill(ctx, tenant.schema_name)
    _owner(tenant.slug)
    # The first overview then sums the chart's 29 past days from the index and caches them.
    harness.clear_cache_prefix(ctx.env["CACHE_KEY_PREFIX"])
    headers = {"Cookie": _sign_in(base)}
    customer_id = ctx.sql(
        f'SELECT customer_id FROM "{tenant.schema_name}".billable_externalidentity'
        " WHERE external_id = 'c5000'"
    )[0][0]
    pages = {
        "healthz": ("/healthz", {}),
        "customer": (f"/console/customers/{customer_id}/", {"headers": headers}),
        "overview": ("/console/", {"headers": headers}),
    }
    began = time.perf_counter()
    cold = httpx.get(f"{base}/console/", headers=headers, timeout=60)
    cold_ms = round((time.perf_counter() - began) * 1000, 1)
    if cold.status_code != 200 or "Consumption per feature per day" not in cold.text:
        raise SystemExit(f"the overview answered {cold.status_code}: {cold.text[:300]}")
    points: list[dict[str, Any]] = []
    for concurrency in CONCURRENCY:
        for name, (path, kwargs) in pages.items():
            result = harness.drive_measured(
                ctx.server, ctx.current.database,
                lambda i, path=path, kwargs=kwargs: ("GET", path, kwargs),
                label=f"console-{name}-c{concurrency}", concurrency=concurrency,
            )
            points.append({"page": name, "path": path, "concurrency": concurrency,
                           **result.as_dict()})
            harness.say(f"{name} c{concurrency}: p50 {result.p50_ms} ms, p99 {result.p99_ms} ms, "
                        f"{result.rps} req/s")
    baseline = {p["concurrency"]: p for p in points if p["page"] == "healthz"}
    for p in points:
        p["p50_over_healthz"] = harness.ratio(p["p50_ms"], baseline[p["concurrency"]]["p50_ms"])
        p["within_target"] = p["page"] == "healthz" or p["concurrency"] != 1 or (
            p["p50_ms"] < TARGET_P50_MS
        )
    correct = all(p["errors"] == 0 for p in points)
    print(harness.table(*table(points, cold_ms)))
    return {
        "customers": CUSTOMERS,
        "ledger_entries": LEDGER_ENTRIES,
        "orders": ORDERS,
        "target_p50_ms": TARGET_P50_MS,
        "overview_cold_ms": cold_ms,
        "points": points,
        "within_target": all(p["within_target"] for p in points),
        "correct": correct,
    }


def table(points: list[dict[str, Any]], cold_ms: float) -> harness.Table:
    rows = [
        [p["page"] + (" (baseline)" if p["page"] == "healthz" else ""), p["concurrency"],
         p["p50_ms"], p["p99_ms"], p["rps"], f"{p['p50_over_healthz']:.1f}",
         "-" if p["page"] == "healthz" or p["concurrency"] != 1
         else ("yes" if p["within_target"] else "NO"),
         p["extra"].get("server_cpu_ms_per_request", "-"), p["errors"]]
        for p in points
    ]
    return (
        f"console: {CUSTOMERS:,} customers, {LEDGER_ENTRIES:,} ledger entries "
        f"(overview cold, one request: {cold_ms} ms)",
        ["page", "clients", "p50 ms", "p99 ms", "req/s", "p50 / healthz",
         f"p50 < {TARGET_P50_MS:.0f} ms", "server CPU ms", "errors"],
        rows,
    )
