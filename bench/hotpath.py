"""consume and balance: the API through the production server against pgbench, same statements.

Two shapes: one hot customer (every client on the same batch row) and 1,000 customers (each
request picks one at random). The pgbench script is the SQL one request issues, captured from the
running code; only the values that differ per request become pgbench variables.
"""

from __future__ import annotations

import random
import uuid
from typing import Any

from bench import fixtures, harness
from bench.context import CUSTOMERS, Context

CONCURRENCY = (1, 16, 64)
SHAPES = ("hot", "many")


def _external_id(shape: str, rng: random.Random) -> str:
    return "hot" if shape == "hot" else f"c{rng.randint(1, CUSTOMERS)}"


def _uuid_forms(value: Any) -> list[str]:
    text = str(uuid.UUID(str(value)))
    return [text, text.replace("-", "")]


def _replace_uuid(sql: str, value: Any, replacement: str) -> str:
    for form in _uuid_forms(value):
        sql = sql.replace(f"'{form}'", replacement)
    return sql


def consume_script(ctx: Context, shape: str) -> str:
    """The statements of one consume, as pgbench commands."""
    external_id = "hot" if shape == "hot" else "c1"
    body = {"external_id": external_id, "feature": fixtures.FEATURE,
            "action_type": f"bench-capture-{shape}"}
    status, statements = harness.capture_statements(
        "POST", "/api/v1/billing/quota/consume", key=ctx.tenant.key, body=body
    )
    if status != 200:
        raise SystemExit(f"capturing a consume answered {status}")
    (customer_id,) = ctx.sql(
        "SELECT customer_id FROM t_bench.billable_externalidentity WHERE external_id = %s",
        [external_id],
    )[0]
    (batch_id,) = ctx.sql(
        "SELECT id FROM t_bench.billable_quotabatch WHERE customer_id = %s", [customer_id]
    )[0]
    (usage_id,) = ctx.sql(
        "SELECT id FROM t_bench.billable_usage WHERE action_type = %s", [body["action_type"]]
    )[0]
    lines = [_choose_customer(shape)]
    for sql in statements:
        sql = " ".join(sql.split())
        sql = sql.replace(f"'{body['action_type']}'", "'pgbench'")
        sql = sql.replace(f"= '{external_id}'", "= ':ext'")
        sql = _replace_uuid(sql, customer_id, "':c_customer_id'")
        sql = _replace_uuid(sql, batch_id, "':b_id'")
        if sql.startswith('INSERT INTO "billable_usage"'):
            # The id is made by the client in Python; here the database makes it.
            sql = _replace_uuid(sql, usage_id, "gen_random_uuid()") + ' RETURNING "id"'
            lines.append(sql + r" \gset u_")
            continue
        sql = _replace_uuid(sql, usage_id, "':u_id'")
        if sql.startswith('SELECT "billable_externalidentity"'):
            lines.append(sql + r" \gset c_")
        elif "FOR UPDATE" in sql:
            lines.append(sql + r" \gset b_")
        else:
            lines.append(sql + ";")
    return "\n".join(lines) + "\n"


def balance_script(ctx: Context, shape: str) -> str:
    """The statements of one balance read, as pgbench commands."""
    external_id = "hot" if shape == "hot" else "c1"
    status, statements = harness.capture_statements(
        "GET", "/api/v1/billing/balance", key=ctx.tenant.key,
        params={"external_id": external_id, "feature": fixtures.FEATURE},
    )
    if status != 200:
        raise SystemExit(f"capturing a balance answered {status}")
    (customer_id,) = ctx.sql(
        "SELECT customer_id FROM t_bench.billable_externalidentity WHERE external_id = %s",
        [external_id],
    )[0]
    lines = [_choose_customer(shape)]
    for sql in statements:
        sql = " ".join(sql.split())
        sql = sql.replace(f"= '{external_id}'", "= ':ext'")
        sql = _replace_uuid(sql, customer_id, "':c_customer_id'")
        if sql.startswith('SELECT "billable_externalidentity"'):
            lines.append(sql + r" \gset c_")
        else:
            lines.append(sql + ";")
    return "\n".join(lines) + "\n"


def _choose_customer(shape: str) -> str:
    return "-- one hot customer" if shape == "hot" else rf"\set n random(1, {CUSTOMERS})"


def _pgbench_script(script: str, shape: str) -> str:
    """pgbench variables hold numbers: the external id is a literal prefix plus a number."""
    return script.replace("':ext'", "'hot'" if shape == "hot" else "'c:n'")


def check_consume(ctx: Context, action_type: str, client_ok: int) -> dict[str, Any]:
    """Client-counted successes = ledger debits of this run; no batch below zero."""
    debits, units = ctx.sql(
        "SELECT count(*), coalesce(sum(amount), 0) FROM t_bench.billable_ledgerentry "
        "WHERE action_type = %s AND direction = 'debit'",
        [action_type],
    )[0]
    (negative,) = ctx.sql(
        "SELECT count(*) FROM t_bench.billable_quotabatch WHERE remaining < 0"
    )[0]
    (drift,) = ctx.sql(
        """
        SELECT count(*) FROM t_bench.billable_quotabatch b
        WHERE b.remaining <> (
            SELECT coalesce(sum(CASE WHEN e.direction = 'credit' THEN e.amount
                                     ELSE -e.amount END), 0)
            FROM t_bench.billable_ledgerentry e WHERE e.batch_id = b.id)
        """
    )[0]
    ok = debits == client_ok and units == client_ok and negative == 0 and drift == 0
    return {"client_ok": client_ok, "ledger_debits": int(debits), "negative_batches": int(negative),
            "batches_off_ledger": int(drift), "correct": ok}


def run(ctx: Context, name: str) -> dict[str, Any]:
    base = ctx.server.base_url
    key = ctx.tenant.key
    rng = random.Random(7)
    points: list[dict[str, Any]] = []
    rows: list[list[Any]] = []
    all_correct = True
    for shape in SHAPES:
        script = _pgbench_script(
            consume_script(ctx, shape) if name == "consume" else balance_script(ctx, shape), shape
        )
        for concurrency in CONCURRENCY:
            label = f"{name}-{shape}-c{concurrency}"

            def request(index: int, shape: str = shape, label: str = label) -> tuple[
                str, str, dict[str, Any]
            ]:
                external_id = _external_id(shape, rng)
                headers = {"X-API-Key": key}
                if name == "consume":
                    return "POST", "/api/v1/billing/quota/consume", {
                        "json": {"external_id": external_id, "feature": fixtures.FEATURE,
                                 "action_type": label},
                        "headers": headers,
                    }
                return "GET", "/api/v1/billing/balance", {
                    "params": {"external_id": external_id, "feature": fixtures.FEATURE},
                    "headers": headers,
                }

            cpu_before = harness.tree_cpu_seconds(ctx.server.process.pid)
            result = harness.drive(base, request, label=label, concurrency=concurrency)
            served = result.extra["total_ok"] + result.extra["total_failed"]
            result.extra["server_cpu_ms_per_request"] = round(
                (harness.tree_cpu_seconds(ctx.server.process.pid) - cpu_before) * 1000
                / max(1, served), 2
            )
            check: dict[str, Any] = {}
            if name == "consume":
                check = check_consume(ctx, label, result.ok)
                all_correct = all_correct and check["correct"]
            baseline = harness.pgbench(ctx.url, script, clients=concurrency)
            share = harness.ratio(result.rps, baseline.tps)
            points.append({"shape": shape, "concurrency": concurrency, "api": result.as_dict(),
                           "pgbench": baseline.as_dict(), "ratio": share, "check": check})
            rows.append([shape, concurrency, result.rps, result.p50_ms, result.p95_ms,
                         result.p99_ms, result.errors, result.extra["server_cpu_ms_per_request"],
                         baseline.tps, baseline.p99_ms,
                         f"{share:.0%}", "ok" if check.get("correct", True) else "WRONG"])
            harness.say(f"{label}: {result.rps} req/s, p99 {result.p99_ms} ms, "
                        f"pgbench {baseline.tps} tps ({share:.0%})")
    variants = _worker_variants(ctx, name, key) if name == "consume" else []
    for variant in variants:
        all_correct = all_correct and variant["check"]["correct"]
    print(harness.table(
        f"{name} ({ctx.server.describe()}; {harness.SECONDS:.0f} s per point)",
        ["shape", "clients", "req/s", "p50 ms", "p95 ms", "p99 ms", "errors", "CPU ms/req",
         "pgbench tps",
         "pgbench p99", "ratio", "check"],
        rows,
    ))
    if variants:
        print(harness.table(
            "consume, 1,000 customers, 16 clients, by gunicorn worker class",
            ["server", "req/s", "p50 ms", "p99 ms", "errors", "check"],
            [[v["server"], v["api"]["rps"], v["api"]["p50_ms"], v["api"]["p99_ms"],
              v["api"]["errors"], "ok" if v["check"]["correct"] else "WRONG"] for v in variants],
        ))
    return {"server": ctx.server.describe(), "points": points, "worker_classes": variants,
            "script_example": script, "correct": all_correct}


def _worker_variants(ctx: Context, name: str, key: str) -> list[dict[str, Any]]:
    """The same point (1,000 customers, 16 clients) on sync and on gthread workers."""
    rng = random.Random(11)
    variants: list[dict[str, Any]] = []
    for worker_class, workers, threads in (("sync", 4, 1), ("gthread", 4, 4), ("gthread", 2, 8)):
        with harness.production_server(ctx.env, workers=workers, worker_class=worker_class,
                                       threads=threads) as server:
            label = f"consume-many-c16-{worker_class}-{workers}x{threads}"

            def request(index: int, label: str = label) -> tuple[str, str, dict[str, Any]]:
                return "POST", "/api/v1/billing/quota/consume", {
                    "json": {"external_id": _external_id("many", rng),
                             "feature": fixtures.FEATURE, "action_type": label},
                    "headers": {"X-API-Key": key},
                }

            result = harness.drive(server.base_url, request, label=label, concurrency=16)
            variants.append({"server": server.describe(), "api": result.as_dict(),
                             "check": check_consume(ctx, label, result.ok)})
            harness.say(f"{label}: {result.rps} req/s, p99 {result.p99_ms} ms")
    return variants
