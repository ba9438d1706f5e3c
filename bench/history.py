"""history: a customer with 100,000 past usages is served as fast as a fresh one.

Both customers live in one tenant of their own and get one batch of the same offer through the
API. The old customer's past is then written in SQL (generate_series): 100,000 usages, each with
its debit in the ledger, and the batch's `remaining` lowered by as much, so the batch still equals
its ledger. Afterwards the tables are vacuumed and analysed, as autovacuum would have done over the
months that past took (autovacuum is off on the project's machine).

Consume and balance, 1 and 16 clients, all on one customer: runs fresh, old, old, fresh (with a
baseline: A fresh, A old, B fresh, B old, B old, B fresh, A old, A fresh), means per customer.
"""

from __future__ import annotations

import functools
from typing import Any

from bench import fixtures, harness, hotpath
from bench.context import Context, Side

PAST = 100_000
CONCURRENCY = (1, 16)
ENDPOINTS = ("consume", "balance")
CUSTOMERS = ("fresh", "old")
# quality.md: no slowdown beyond 10 % for a customer with a long past.
TOLERANCE = 0.10


def _prepare(side: Side) -> fixtures.Tenant:
    """A tenant with a fresh and an old customer, each with one batch of the same offer."""
    base = side.server.base_url
    tenant = fixtures.onboard(base, side.platform_key, "history")
    fixtures.catalog(base, tenant)
    fixtures.grant(base, tenant, list(CUSTOMERS))
    schema = tenant.schema_name
    customer_id, batch_id = side.sql(
        f'SELECT b.customer_id, b.id FROM "{schema}".billable_quotabatch b '
        f'JOIN "{schema}".billable_externalidentity i ON i.customer_id = b.customer_id '
        "WHERE i.external_id = 'old'"
    )[0]
    side.sql(
        f"""
        WITH past AS (
            INSERT INTO "{schema}".billable_usage
                (id, customer_id, feature, amount, action_type, action_id, metadata, created_at)
            SELECT gen_random_uuid(), %s, %s, 1, 'history', '', '{{}}'::jsonb,
                   now() - (%s - g) * interval '1 minute'
            FROM generate_series(1, %s) AS g
            RETURNING id, created_at
        )
        INSERT INTO "{schema}".billable_ledgerentry
            (batch_id, direction, amount, action_type, action_id, actor, usage_id, hold_id,
             metadata, created_at)
        SELECT %s, 'debit', 1, 'history', '', '', past.id, NULL, '{{}}'::jsonb, past.created_at
        FROM past ORDER BY past.created_at
        """,
        [customer_id, fixtures.FEATURE, PAST, PAST, batch_id],
    )
    side.sql(
        f'UPDATE "{schema}".billable_quotabatch SET remaining = remaining - %s WHERE id = %s',
        [PAST, batch_id],
    )
    for table in ("billable_usage", "billable_ledgerentry", "billable_quotabatch"):
        side.sql(f'VACUUM ANALYZE "{schema}".{table}')
    usages, debits, remaining, ledger = side.sql(
        f"""
        SELECT (SELECT count(*) FROM "{schema}".billable_usage WHERE customer_id = %s),
               (SELECT count(*) FROM "{schema}".billable_ledgerentry
                WHERE batch_id = %s AND direction = 'debit'),
               b.remaining,
               (SELECT sum(CASE WHEN e.direction = 'credit' THEN e.amount ELSE -e.amount END)
                FROM "{schema}".billable_ledgerentry e WHERE e.batch_id = b.id)
        FROM "{schema}".billable_quotabatch b WHERE b.id = %s
        """,
        [customer_id, batch_id, batch_id],
    )[0]
    if usages != PAST or debits != PAST or remaining != ledger:
        raise SystemExit(f"{side.name}: the old customer's past is off: {usages} usages, "
                         f"{debits} debits, remaining {remaining} against a ledger of {ledger}")
    harness.say(f"{side.name}: the old customer has {PAST:,} past usages and debits")
    return tenant


def _request(index: int, *, endpoint: str, key: str, customer: str,
             action_type: str) -> tuple[str, str, dict[str, Any]]:
    headers = {"X-API-Key": key}
    if endpoint == "consume":
        return "POST", "/api/v1/billing/quota/consume", {
            "json": {"external_id": customer, "feature": fixtures.FEATURE,
                     "action_type": action_type},
            "headers": headers,
        }
    return "GET", "/api/v1/billing/balance", {
        "params": {"external_id": customer, "feature": fixtures.FEATURE}, "headers": headers,
    }


def run(ctx: Context) -> dict[str, Any]:
    sides = ctx.sides
    tenants = {side.name: _prepare(side) for side in sides}
    order = harness.abba([(side, customer) for side in sides for customer in CUSTOMERS])
    points: list[dict[str, Any]] = []
    all_correct = True
    for endpoint in ENDPOINTS:
        for concurrency in CONCURRENCY:
            label = f"history-{endpoint}-c{concurrency}"
            runs: dict[tuple[str, str], list[harness.Run]] = {}
            checks: dict[tuple[str, str], list[dict[str, Any]]] = {}
            for index, (side, customer) in enumerate(order):
                tenant = tenants[side.name]
                action_type = f"{label}-{customer}-r{index + 1}"
                result = harness.drive_measured(
                    side.server, side.database,
                    functools.partial(_request, endpoint=endpoint, key=tenant.key,
                                      customer=customer, action_type=action_type),
                    label=action_type, concurrency=concurrency,
                )
                runs.setdefault((side.name, customer), []).append(result)
                if endpoint == "consume":
                    check = hotpath.check_consume(side, tenant.schema_name, action_type,
                                                  result.ok)
                    checks.setdefault((side.name, customer), []).append(check)
                    all_correct = all_correct and check["correct"]
                harness.say(f"{action_type} ({side.name}): {result.rps} req/s, "
                            f"p50 {result.p50_ms} ms, p99 {result.p99_ms} ms")
            for side in sides:
                fresh = harness.mean_run(runs[(side.name, "fresh")])
                old = harness.mean_run(runs[(side.name, "old")])
                slowdown = harness.ratio(old.rps, fresh.rps)
                check = hotpath.merge_checks(checks.get((side.name, "fresh"), [])
                                             + checks.get((side.name, "old"), []))
                points.append({"side": side.name, "side_label": side.label,
                               "endpoint": endpoint, "concurrency": concurrency,
                               "fresh": fresh.as_dict(), "old": old.as_dict(),
                               "ratio": slowdown, "within": slowdown >= 1 - TOLERANCE,
                               "check": check})
    print(harness.table(*table(points)))
    return {"past_usages": PAST, "tolerance": TOLERANCE, "points": points,
            "baseline": ctx.baseline_info(), "correct": all_correct}


def table(points: list[dict[str, Any]]) -> harness.Table:
    """Per side, endpoint and concurrency: the fresh and the old customer, and old/fresh."""
    rows = []
    for p in points:
        fresh, old = p["fresh"], p["old"]
        rows.append([p["side_label"], p["endpoint"], p["concurrency"], fresh["rps"], old["rps"],
                     f"{p['ratio']:.2f}", "yes" if p["within"] else "NO", fresh["p50_ms"],
                     old["p50_ms"], fresh["p99_ms"], old["p99_ms"],
                     fresh["extra"]["server_cpu_ms_per_request"],
                     old["extra"]["server_cpu_ms_per_request"],
                     "ok" if p["check"].get("correct", True) else "WRONG"])
    return (
        f"history: a customer with {PAST:,} past usages (old) against a fresh one "
        f"(runs fresh, old, old, fresh; means per customer)",
        ["side", "endpoint", "clients", "fresh req/s", "old req/s", "old/fresh",
         f"within {TOLERANCE:.0%}", "fresh p50", "old p50", "fresh p99", "old p99",
         "fresh CPU ms", "old CPU ms", "check"],
        rows,
    )
