"""Markdown tables of bench/results/*.json, for docs/benchmarks.md: `python -m bench.report`."""

from __future__ import annotations

import json
from typing import Any

from bench import console as console_bench
from bench import history as history_bench
from bench import hotpath as hotpath_bench
from bench.harness import RESULTS, Table


def _load(name: str) -> dict[str, Any] | None:
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def _table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _titled(table: Table) -> str:
    title, header, rows = table
    return f"{title}:\n\n{_table(header, rows)}"


def hotpath(name: str) -> str:
    data = _load(name)
    if data is None:
        return f"({name}: no results)"
    rows = []
    for p in data["points"]:
        api, base = p["api"], p["pgbench"]
        shape = "hot customer" if p["shape"] == "hot" else "1,000 customers"
        base = base or {"tps": "-", "p99_ms": "-"}
        rows.append([shape, p["concurrency"], api["rps"], api["p50_ms"], api["p95_ms"],
                     api["p99_ms"], api["errors"],
                     api["extra"].get("server_cpu_ms_per_request", ""), base["tps"],
                     base["p99_ms"], f"{p['ratio']:.0%}" if p["pgbench"] else "-",
                     "ok" if p["check"].get("correct", True) else "WRONG"])
    text = f"{data['server']}, {data['seconds_per_point']:.0f} s per point after "
    text += f"{data['warmup_seconds']:.0f} s of warm-up ({data['when']}, load average "
    text += f"{data['machine'].get('load_average_1_5_15', ['?'])[0]} at the end).\n\n"
    text += _table(["shape", "clients", "req/s", "p50 ms", "p95 ms", "p99 ms", "errors",
                    "server CPU ms/req", "pgbench tps", "pgbench p99 ms", "ratio", "check"],
                   rows)
    wrk = data.get("wrk") or {}
    wrk_points = wrk.get("points") or []
    if data.get("baseline"):
        text += "\n\n" + _titled(hotpath_bench.ab_table(name, data["baseline"],
                                                        data["points"] + wrk_points))
    if wrk_points:
        text += "\n\n" + _titled(hotpath_bench.wrk_table(name, wrk_points))
    elif wrk.get("skipped"):
        text += f"\n\nwrk: skipped ({wrk['skipped']})"
    if all("server_cpu_share" in p["api"]["extra"] for p in data["points"]):
        text += "\n\n" + _titled(hotpath_bench.cpu_table(name, data["points"] + wrk_points))
    variants = data.get("worker_classes") or []
    if variants:
        text += "\n\n" + _table(
            ["server (1,000 customers, 16 clients)", "req/s", "p50 ms", "p99 ms", "errors"],
            [[v["server"], v["api"]["rps"], v["api"]["p50_ms"], v["api"]["p99_ms"],
              v["api"]["errors"]] for v in variants],
        )
    return text


def history() -> str:
    data = _load("history")
    if data is None:
        return "(history: no results)"
    text = f"{data['seconds_per_point']:.0f} s per run after {data['warmup_seconds']:.0f} s of "
    text += f"warm-up ({data['when']}).\n\n"
    return text + _titled(history_bench.table(data["points"]))


def onboarding() -> str:
    data = _load("onboarding")
    if data is None:
        return "(onboarding: no results)"
    text = _table(
        ["existing tenants", "API p50 ms", "API max ms", "by migrations p50 ms", "ratio"],
        [[lv["existing_tenants"], lv["api_p50_ms"], lv["api_p99_ms"], lv["baseline_p50_ms"],
          f"{lv['ratio']:.1%}"] for lv in data["levels"]],
    )
    m = data["migrate_schemas"]
    text += "\n\n" + _table(
        [f"migrate_schemas over {m['tenant_schemas']} tenant schemas", "seconds",
         "ms per schema"],
        [["nothing to do (skips current schemas)", m["nothing_to_do_seconds"],
          m["nothing_to_do_ms_per_schema"]],
         ["nothing to do, `--all-schemas` (django-tenants' way)",
          m["nothing_to_do_all_schemas_seconds"], m["all_schemas_ms_per_schema"]],
         [f"one new migration ({m['new_migration']})", m["new_migration_seconds"],
          m["new_migration_ms_per_schema"]]],
    )
    return text


def webhooks() -> str:
    data = _load("webhooks")
    if data is None:
        return "(webhooks: no results)"
    return _table(
        ["measure", "Billable (one worker)", "bare httpx POST loop", "ratio"],
        [["commit → receiver p50 ms", data["latency"]["p50_ms"], data["baseline"]["p50_ms"],
          ""],
         ["commit → receiver p99 ms", data["latency"]["p99_ms"], "", ""],
         ["deliveries/s", data["throughput"]["deliveries_per_second"],
          data["baseline"]["posts_per_second"], f"{data['ratio']:.0%}"]],
    )


def routing() -> str:
    data = _load("routing")
    if data is None:
        return "(routing: no results)"
    r, h, k = data["resolve"], data["healthz"], data["keyed"]
    return _table(
        ["measure", "p50 ms", "p99 ms", "req/s", "SQL statements"],
        [["key → tenant resolution, warm, in process", r["p50_ms"], r["p99_ms"], "",
          r["sql_per_warm_lookup"]],
         ["GET /healthz (baseline: no key, no tenant)", h["p50_ms"], h["p99_ms"], h["rps"], 0],
         ["GET /api/v1/settings (key resolved, schema selected)", k["p50_ms"], k["p99_ms"],
          k["rps"], ""]],
    )


def console() -> str:
    data = _load("console")
    if data is None:
        return "(console: no results)"
    return _titled(console_bench.table(data["points"], data["overview_cold_ms"]))


def main() -> None:
    for title, text in (("consume", hotpath("consume")), ("balance", hotpath("balance")),
                        ("history", history()), ("onboarding", onboarding()),
                        ("webhooks", webhooks()), ("routing", routing()),
                        ("console", console())):
        print(f"### {title}\n\n{text}\n")


if __name__ == "__main__":
    main()
