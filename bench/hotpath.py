"""consume and balance: the API through the production server against pgbench, same statements.

Two shapes: one hot customer (every client on the same batch row) and 1,000 customers (each
request picks one at random). The pgbench script is the SQL one request issues, captured from the
running code; only the values that differ per request become pgbench variables.

With a baseline commit (BENCH_BASELINE), every point is run A, B, B, A (A the baseline's server,
B the current one), each side against its own database; each side's figures are the means of its
two runs. The 16-client points run again with wrk, a client light enough to leave the machine to
the server.
"""

from __future__ import annotations

import functools
import random
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bench import fixtures, harness, wrk
from bench.context import CUSTOMERS, Context, Side

CONCURRENCY = (1, 16, 64)
SHAPES = ("hot", "many")
WRK_CONCURRENCY = 16


def _external_id(shape: str, rng: random.Random) -> str:
    return "hot" if shape == "hot" else f"c{rng.randint(1, CUSTOMERS)}"


def _uuid_forms(value: Any) -> list[str]:
    text = str(uuid.UUID(str(value)))
    return [text, text.replace("-", "")]


def _replace_uuid(sql: str, value: Any, replacement: str) -> str:
    for form in _uuid_forms(value):
        sql = sql.replace(f"'{form}'", replacement)
    return sql


def _customer_id(side: Side, external_id: str) -> Any:
    schema = side.tenant.schema_name
    return side.sql(
        f'SELECT customer_id FROM "{schema}".billable_externalidentity WHERE external_id = %s',
        [external_id],
    )[0][0]


def _to_pgbench(statements: list[str], *, shape: str, external_id: str, customer_id: Any,
                action_type: str | None = None, batch_id: Any = None,
                usage_id: Any = None) -> str:
    """The captured statements as pgbench commands: the values that differ per request become
    variables, set by a `\\gset` of the statement that reads them (the customer from its
    identity, the locked batch, the usage's id once inserted) or made by the database (a usage id
    made in Python before the statement that writes it: `gen_random_uuid()`)."""
    lines = [_choose_customer(shape)]
    have: set[str] = set()
    for sql in statements:
        sql = " ".join(sql.split())
        if action_type is not None:
            sql = sql.replace(f"'{action_type}'", "'pgbench'")
        sql = sql.replace(f"'{external_id}'", "':ext'")
        sql = _replace_uuid(sql, customer_id, "':c_customer_id'")
        if batch_id is not None:
            sql = _replace_uuid(sql, batch_id, "':b_id'")
        gset = None  # the prefix of the variables this statement's row sets
        if usage_id is not None and "u" not in have:
            if sql.startswith('INSERT INTO "billable_usage"'):
                sql = _replace_uuid(sql, usage_id, "gen_random_uuid()") + ' RETURNING "id"'
                gset = "u"
            else:
                sql = _replace_uuid(sql, usage_id, "gen_random_uuid()")
        elif usage_id is not None:
            sql = _replace_uuid(sql, usage_id, "':u_id'")
        if sql.startswith('SELECT "billable_externalidentity"'):
            gset = "c"
        elif sql.startswith("SELECT") and "FOR UPDATE" in sql and batch_id is not None:
            gset = "b"
        for variable, prefix in (("':c_customer_id'", "c"), ("':b_id'", "b"), ("':u_id'", "u")):
            if variable in sql and prefix not in have:
                raise harness.PgbenchFailed(f"no pgbench script: {variable} is used before a "
                                            f"statement sets it:\n{sql}")
        if gset is not None:
            have.add(gset)
        suffix = ";" if gset is None else rf" \gset {gset}_"
        lines.append(sql + suffix)
    return "\n".join(lines) + "\n"


def consume_script(side: Side, shape: str) -> Script:
    """The statements of one consume, as pgbench commands."""
    external_id = "hot" if shape == "hot" else "c1"
    body = {"external_id": external_id, "feature": fixtures.FEATURE,
            "action_type": f"bench-capture-{shape}"}
    capture = harness.capture_statements(
        "POST", "/api/v1/billing/quota/consume", key=side.tenant.key, body=body
    )
    if capture.status != 200:
        raise SystemExit(f"capturing a consume answered {capture.status}")
    schema = side.tenant.schema_name
    customer_id = _customer_id(side, external_id)
    (batch_id,) = side.sql(
        f'SELECT id FROM "{schema}".billable_quotabatch WHERE customer_id = %s', [customer_id]
    )[0]
    (usage_id,) = side.sql(
        f'SELECT id FROM "{schema}".billable_usage WHERE action_type = %s '
        "ORDER BY created_at DESC LIMIT 1", [body["action_type"]],
    )[0]
    return Script(_to_pgbench(capture.statements, shape=shape, external_id=external_id,
                              customer_id=customer_id, action_type=body["action_type"],
                              batch_id=batch_id, usage_id=usage_id), capture.protocol)


def balance_script(side: Side, shape: str) -> Script:
    """The statements of one balance read, as pgbench commands."""
    external_id = "hot" if shape == "hot" else "c1"
    capture = harness.capture_statements(
        "GET", "/api/v1/billing/balance", key=side.tenant.key,
        params={"external_id": external_id, "feature": fixtures.FEATURE},
    )
    if capture.status != 200:
        raise SystemExit(f"capturing a balance answered {capture.status}")
    return Script(_to_pgbench(capture.statements, shape=shape, external_id=external_id,
                              customer_id=_customer_id(side, external_id)), capture.protocol)


def _choose_customer(shape: str) -> str:
    return "-- one hot customer" if shape == "hot" else rf"\set n random(1, {CUSTOMERS})"


@dataclass(frozen=True)
class Script:
    """pgbench commands with the variables still as quoted placeholders (`':ext'`, ...), and the
    protocol the server used: `prepared` when it prepared every statement, else `simple`."""

    text: str
    protocol: str

    def render(self, shape: str) -> str:
        """The script pgbench runs. pgbench variables hold numbers, so the external id is a
        literal prefix plus a number. In simple mode pgbench puts a variable's text in place
        (quotes kept); in prepared mode a variable becomes a parameter (quotes dropped)."""
        if self.protocol == "simple":
            return self.text.replace("':ext'", "'hot'" if shape == "hot" else "'c:n'")
        text = self.text.replace("':ext'", "'hot'" if shape == "hot" else "('c' || :n::text)")
        text = re.sub(r"':([a-z_]+)'", r":\1", text)
        # pgbench reads `:name` inside a literal as a parameter too in prepared mode: the
        # captured clock time becomes now() and the actor ('key:<id>') loses its colon.
        text = _TIMESTAMP.sub("now()", text)
        text = re.sub(r"'key:([0-9a-f-]+)'", r"'key-\1'", text)
        for literal in re.finditer(r"'(?:[^']|'')*'", text):
            if re.search(r":[A-Za-z0-9_]", literal.group(0)):
                raise harness.PgbenchFailed("a literal pgbench would read as a variable in "
                                            f"prepared mode: {literal.group(0)}")
        return text


_TIMESTAMP = re.compile(r"'\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(\.\d+)?\+00:00'")


def check_consume(side: Side, schema: str, action_type: str, client_ok: int, *,
                  unanswered: int | None = None) -> dict[str, Any]:
    """Client-counted successes = ledger debits of this run; no batch below zero; every batch's
    `remaining` equals its ledger. With `unanswered` (wrk: requests sent, but the client stopped
    before their answer) each of those may have been done, so debits may exceed successes by
    that many; every request then has its own action_id, and none may have two debits."""
    debits, units, requests = side.sql(
        "SELECT count(*), coalesce(sum(amount), 0), count(DISTINCT action_id) "
        f'FROM "{schema}".billable_ledgerentry '
        "WHERE action_type = %s AND direction = 'debit'",
        [action_type],
    )[0]
    (negative,) = side.sql(
        f'SELECT count(*) FROM "{schema}".billable_quotabatch WHERE remaining < 0'
    )[0]
    (drift,) = side.sql(
        f"""
        SELECT count(*) FROM "{schema}".billable_quotabatch b
        WHERE b.remaining <> (
            SELECT coalesce(sum(CASE WHEN e.direction = 'credit' THEN e.amount
                                     ELSE -e.amount END), 0)
            FROM "{schema}".billable_ledgerentry e WHERE e.batch_id = b.id)
        """
    )[0]
    check = {"client_ok": client_ok, "ledger_debits": int(debits),
             "negative_batches": int(negative), "batches_off_ledger": int(drift)}
    ok = units == debits and negative == 0 and drift == 0
    if unanswered is None:
        ok = ok and debits == client_ok
    else:
        check["unanswered"] = unanswered
        check["done_twice"] = int(debits - requests)
        ok = ok and client_ok <= debits <= client_ok + unanswered and debits == requests
    check["correct"] = ok
    return check


def merge_checks(checks: list[dict[str, Any]]) -> dict[str, Any]:
    """The checks of a point's runs on one side, as one."""
    if not checks:
        return {}
    if len(checks) == 1:
        return checks[0]
    merged: dict[str, Any] = {
        "client_ok": sum(c["client_ok"] for c in checks),
        "ledger_debits": sum(c["ledger_debits"] for c in checks),
        "negative_batches": max(c["negative_batches"] for c in checks),
        "batches_off_ledger": max(c["batches_off_ledger"] for c in checks),
        "correct": all(c["correct"] for c in checks),
    }
    for name in ("unanswered", "done_twice"):
        if any(name in c for c in checks):
            merged[name] = sum(c.get(name, 0) for c in checks)
    return merged


def _verdict(check: dict[str, Any]) -> str:
    return "ok" if check.get("correct", True) else "WRONG"


def _python_point(side: Side, action_type: str, *, name: str, shape: str, concurrency: int,
                  rng: random.Random) -> harness.Run:
    key = side.tenant.key

    def request(index: int) -> tuple[str, str, dict[str, Any]]:
        external_id = _external_id(shape, rng)
        headers = {"X-API-Key": key}
        if name == "consume":
            return "POST", "/api/v1/billing/quota/consume", {
                "json": {"external_id": external_id, "feature": fixtures.FEATURE,
                         "action_type": action_type},
                "headers": headers,
            }
        return "GET", "/api/v1/billing/balance", {
            "params": {"external_id": external_id, "feature": fixtures.FEATURE},
            "headers": headers,
        }

    return harness.drive_measured(side.server, side.database, request, label=action_type,
                                  concurrency=concurrency)


def _wrk_point(side: Side, action_type: str, *, name: str, shape: str, idem: bool) -> harness.Run:
    return wrk.measure(side.server, side.database, endpoint=name, key=side.tenant.key,
                       action_type=action_type, shape=shape, idem=idem,
                       connections=WRK_CONCURRENCY, customers=CUSTOMERS)


def _ab(ctx: Context, name: str, label: str, one: Callable[[Side, str], harness.Run]
        ) -> tuple[dict[str, harness.Run], dict[str, dict[str, Any]]]:
    """Run one point on every side (A, B, B, A with a baseline): each side's mean run and its
    merged check. `one(side, action_type)` runs it once; each run has its own action type."""
    sides = ctx.sides
    runs: dict[str, list[harness.Run]] = {side.name: [] for side in sides}
    checks: dict[str, list[dict[str, Any]]] = {side.name: [] for side in sides}
    for index, side in enumerate(harness.abba(sides)):
        action_type = label if len(sides) == 1 else f"{label}-r{index + 1}"
        result = one(side, action_type)
        runs[side.name].append(result)
        if name == "consume":
            checks[side.name].append(check_consume(
                side, side.tenant.schema_name, action_type, result.extra["total_ok"],
                unanswered=result.extra.get("unanswered"),
            ))
        harness.say(f"{action_type} ({side.name}): {result.rps} req/s, p50 {result.p50_ms} ms, "
                    f"p99 {result.p99_ms} ms, server {result.extra['server_cpu_ms_per_request']} "
                    f"CPU ms/req")
    return ({side: harness.mean_run(r) for side, r in runs.items()},
            {side: merge_checks(c) for side, c in checks.items()})


def _side_summary(run: harness.Run, check: dict[str, Any]) -> dict[str, Any]:
    return {"api": run.as_dict(), "check": check}


def run(ctx: Context, name: str) -> dict[str, Any]:
    current = ctx.current
    ab = ctx.baseline is not None
    rng = random.Random(7)
    points: list[dict[str, Any]] = []
    rows: list[list[Any]] = []
    all_correct = True
    script: Script | None = None
    for shape in SHAPES:
        try:
            script = (consume_script(current, shape) if name == "consume"
                      else balance_script(current, shape))
        except harness.PgbenchFailed as exc:
            harness.say(f"!!! {name}-{shape}: pgbench SKIPPED: {exc}")
            script = None
        for concurrency in CONCURRENCY:
            label = f"{name}-{shape}-c{concurrency}"
            means, checks = _ab(ctx, name, label, functools.partial(
                _python_point, name=name, shape=shape, concurrency=concurrency, rng=rng))
            result = means["current"]
            ceiling = _pgbench(name, current, script, shape, concurrency)
            share = harness.ratio(result.rps, ceiling.tps) if ceiling else None
            point: dict[str, Any] = {
                "shape": shape, "concurrency": concurrency, "client": "python",
                "api": result.as_dict(), "pgbench": ceiling.as_dict() if ceiling else None,
                "ratio": share, "check": checks["current"],
            }
            if ab:
                point["baseline"] = _side_summary(means["baseline"], checks["baseline"])
                point["ab_ratio"] = harness.ratio(result.rps, means["baseline"].rps)
            all_correct = all_correct and all(c.get("correct", True) for c in checks.values())
            points.append(point)
            rows.append([shape, concurrency, result.rps, result.p50_ms, result.p95_ms,
                         result.p99_ms, result.errors,
                         result.extra["server_cpu_ms_per_request"],
                         ceiling.tps if ceiling else "-", ceiling.p99_ms if ceiling else "-",
                         "-" if share is None else f"{share:.0%}", _verdict(checks["current"])])
            if ceiling and share is not None:
                harness.say(f"{label}: {result.rps} req/s, p99 {result.p99_ms} ms, "
                            f"pgbench {ceiling.tps} tps ({share:.0%})")
    wrk_result = _wrk_points(ctx, name)
    all_correct = all_correct and wrk_result.get("correct", True)
    variants = _worker_variants(ctx, name) if name == "consume" else []
    for variant in variants:
        all_correct = all_correct and variant["check"]["correct"]
    print(harness.table(
        f"{name} ({current.server.describe()}; {harness.SECONDS:.0f} s per point"
        f"{', B = current, mean of 2 runs' if ab else ''})",
        ["shape", "clients", "req/s", "p50 ms", "p95 ms", "p99 ms", "errors", "CPU ms/req",
         "pgbench tps", "pgbench p99", "ratio", "check"],
        rows,
    ))
    all_points = points + wrk_result.get("points", [])
    if ab:
        print(harness.table(*ab_table(name, ctx.baseline_info() or {}, all_points)))
    if wrk_result.get("points"):
        print(harness.table(*wrk_table(name, wrk_result["points"])))
    elif wrk_result.get("skipped"):
        print(f"{name} with wrk: SKIPPED ({wrk_result['skipped']})")
    print(harness.table(*cpu_table(name, all_points)))
    if variants:
        print(harness.table(
            "consume, 1,000 customers, 16 clients, by gunicorn worker class",
            ["server", "req/s", "p50 ms", "p99 ms", "errors", "CPU ms/req", "check"],
            [[v["server"], v["api"]["rps"], v["api"]["p50_ms"], v["api"]["p99_ms"],
              v["api"]["errors"], v["api"]["extra"]["server_cpu_ms_per_request"],
              _verdict(v["check"])] for v in variants],
        ))
    return {"server": current.server.describe(), "points": points, "wrk": wrk_result,
            "worker_classes": variants, "script_example": script.render("many") if script else None,
            "script_protocol": script.protocol if script else None,
            "baseline": ctx.baseline_info(),
            "correct": all_correct}


def _pgbench(name: str, side: Side, script: Script | None, shape: str,
             concurrency: int) -> harness.PgbenchRun | None:
    """pgbench with `script`, or None (said loudly) when there is none or it fails: the API's
    figures and the A/B comparison still stand without it."""
    if script is None:
        return None
    try:
        return harness.pgbench(side.url, script.render(shape), clients=concurrency,
                               protocol=script.protocol)
    except harness.PgbenchFailed as exc:
        harness.say(f"!!! {name}, {concurrency} clients: pgbench SKIPPED: {exc}")
        return None


def _wrk_points(ctx: Context, name: str) -> dict[str, Any]:
    """The 16-client points again with wrk: plain, and for consume with a fresh Idempotency-Key
    on every request."""
    reason = wrk.missing()
    if reason is not None:
        harness.say(f"!!! {name}: the wrk points are SKIPPED: {reason}")
        return {"skipped": reason}
    points: list[dict[str, Any]] = []
    correct = True
    for shape in SHAPES:
        for idem in (False, True) if name == "consume" else (False,):
            label = f"{name}-{shape}-c{WRK_CONCURRENCY}-wrk{'-idem' if idem else ''}"
            means, checks = _ab(ctx, name, label, functools.partial(
                _wrk_point, name=name, shape=shape, idem=idem))
            result = means["current"]
            point: dict[str, Any] = {
                "shape": shape, "concurrency": WRK_CONCURRENCY,
                "client": result.extra["client"], "api": result.as_dict(),
                "check": checks["current"],
            }
            if ctx.baseline is not None:
                point["baseline"] = _side_summary(means["baseline"], checks["baseline"])
                point["ab_ratio"] = harness.ratio(result.rps, means["baseline"].rps)
            correct = correct and all(c.get("correct", True) for c in checks.values())
            points.append(point)
    return {"points": points, "threads": wrk.THREADS, "correct": correct}


def _shape_name(shape: str) -> str:
    return "hot" if shape == "hot" else "1,000"


def ab_table(name: str, info: dict[str, Any], points: list[dict[str, Any]]) -> harness.Table:
    """Per point: each side's mean req/s, p50, p99 and server CPU, and B/A."""
    rows = []
    for p in points:
        a, b = p["baseline"]["api"], p["api"]
        rows.append([
            _shape_name(p["shape"]), p["concurrency"], p["client"], a["rps"], b["rps"],
            f"{p['ab_ratio']:.2f}x", a["p50_ms"], b["p50_ms"], a["p99_ms"], b["p99_ms"],
            a["extra"]["server_cpu_ms_per_request"], b["extra"]["server_cpu_ms_per_request"],
            f"{_verdict(p['baseline']['check'])}/{_verdict(p['check'])}",
        ])
    return (
        f"{name}: A = {info.get('ref')} ({str(info.get('commit'))[:7]}), B = current; "
        "runs A, B, B, A; means of 2 runs per side",
        ["customers", "clients", "client", "A req/s", "B req/s", "B/A", "A p50", "B p50",
         "A p99", "B p99", "A CPU ms/req", "B CPU ms/req", "check A/B"],
        rows,
    )


def wrk_table(name: str, points: list[dict[str, Any]]) -> harness.Table:
    rows = []
    for p in points:
        api = p["api"]
        rows.append([_shape_name(p["shape"]), p["client"], api["rps"], api["p50_ms"],
                     api["p99_ms"], api["extra"]["non_2xx"], api["extra"]["unanswered"],
                     api["extra"]["server_cpu_ms_per_request"],
                     f"{api['extra']['client_cpu_share']:.1%}", _verdict(p["check"])])
    return (
        f"{name} with wrk (-t{wrk.THREADS} -c{WRK_CONCURRENCY}), current code",
        ["customers", "client", "req/s", "p50 ms", "p99 ms", "non-2xx", "unanswered",
         "CPU ms/req", "client CPU", "check"],
        rows,
    )


def cpu_table(name: str, points: list[dict[str, Any]]) -> harness.Table:
    """Where the cores went: CPU per request of server, PostgreSQL and client, and the share of
    the machine each used (other: the kernel's network work, other processes)."""
    rows = []
    for p in points:
        sides = [("B", p["api"])] if "baseline" not in p else [
            ("A", p["baseline"]["api"]), ("B", p["api"])]
        for side, api in sides:
            e = api["extra"]
            rows.append([
                side if "baseline" in p else "", _shape_name(p["shape"]), p["concurrency"],
                p["client"], e["server_cpu_ms_per_request"], e["postgres_cpu_ms_per_request"],
                e["client_cpu_ms_per_request"], f"{e['server_cpu_share']:.0%}",
                f"{e['postgres_cpu_share']:.0%}", f"{e['client_cpu_share']:.0%}",
                f"{e['other_cpu_share']:.0%}", f"{e['machine_busy_share']:.0%}",
            ])
    return (
        f"{name}: where the cores went (CPU ms per request; share of all cores over the run)",
        ["side", "customers", "clients", "client", "server ms", "PG ms", "client ms", "server",
         "PG", "client", "other", "busy"],
        rows,
    )


def _worker_variants(ctx: Context, name: str) -> list[dict[str, Any]]:
    """The same point (1,000 customers, 16 clients) on sync and on gthread workers."""
    current = ctx.current
    key = current.tenant.key
    rng = random.Random(11)
    variants: list[dict[str, Any]] = []
    for worker_class, workers, threads in (("sync", 4, 1), ("gthread", 4, 4), ("gthread", 2, 8)):
        with harness.production_server(current.env, workers=workers, worker_class=worker_class,
                                       threads=threads) as server:
            label = f"consume-many-c16-{worker_class}-{workers}x{threads}"

            def request(index: int, label: str = label) -> tuple[str, str, dict[str, Any]]:
                return "POST", "/api/v1/billing/quota/consume", {
                    "json": {"external_id": _external_id("many", rng),
                             "feature": fixtures.FEATURE, "action_type": label},
                    "headers": {"X-API-Key": key},
                }

            result = harness.drive_measured(server, current.database, request, label=label,
                                            concurrency=16)
            variants.append({"server": server.describe(), "api": result.as_dict(),
                             "check": check_consume(current, current.tenant.schema_name,
                                                    label, result.ok)})
            harness.say(f"{label}: {result.rps} req/s, p99 {result.p99_ms} ms")
    return variants
