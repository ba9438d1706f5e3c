"""webhooks: commit → receiver latency and deliveries/s of one worker process.

Latency: consumes through the API at a steady pace, each `quota.consumed` event delivered by one
running worker; the time from the API's answer (the commit is before it) to the receiver's
arrival. Throughput: events queued while no worker runs, then one worker drains them; the rate
between the first and the last arrival. Baseline: a bare httpx POST loop to the same receiver.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench import fixtures, harness
from bench.context import Context

LATENCY_EVENTS = 200
LATENCY_PACE = 0.03
BACKLOG_EVENTS = 1000


def _wait_for(receiver: str, count: int, timeout: float) -> list[tuple[float, str]]:
    deadline = time.monotonic() + timeout
    while True:
        arrivals = [(float(at), str(body))
                    for at, body in httpx.get(f"{receiver}/arrivals", timeout=10).json()]
        if len(arrivals) >= count or time.monotonic() > deadline:
            return arrivals
        time.sleep(0.2)


def _start_worker(ctx: Context, log: Path) -> Any:
    process = harness.spawn(
        [harness.PYTHON, str(harness.ROOT / "manage.py"), "run_webhook_worker"], ctx.env, log
    )
    deadline = time.monotonic() + 60
    while "webhook worker started" not in log.read_text(errors="replace"):
        if process.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"webhook worker did not start:\n{log.read_text()[-3000:]}")
        time.sleep(0.1)
    return process


def run(ctx: Context) -> dict[str, Any]:
    base = ctx.server.base_url
    port = harness.free_port()
    receiver = f"http://127.0.0.1:{port}"
    log = Path(tempfile.mkstemp(prefix="billable-bench-webhooks-", suffix=".log")[1])
    receiver_process = harness.spawn([harness.PYTHON, "-m", "bench.receiver", str(port)],
                                     ctx.env, log)
    try:
        for _ in range(100):
            try:
                httpx.delete(f"{receiver}/arrivals", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.05)
        tenant = fixtures.onboard(base, ctx.platform_key, "hooks")
        fixtures.catalog(base, tenant)
        headers = {"X-API-Key": tenant.key}
        httpx.post(f"{base}/api/v1/billing/grants", headers=headers, timeout=30,
                   json={"external_id": "w", "sku": "bench_hot", "kind": "manual"}
                   ).raise_for_status()
        httpx.post(f"{base}/api/v1/webhooks/endpoints", headers=headers, timeout=30,
                   json={"url": f"{receiver}/hook", "event_types": ["quota.consumed"]}
                   ).raise_for_status()
        body = {"external_id": "w", "feature": fixtures.FEATURE}

        # Latency: one worker running, events at a steady pace.
        worker = _start_worker(ctx, log)
        answered: dict[str, float] = {}
        with httpx.Client(base_url=base, headers=headers, timeout=30) as client:
            for _ in range(LATENCY_EVENTS):
                response = client.post("/api/v1/billing/quota/consume", json=body)
                answered[response.json()["usage_id"]] = time.time()
                time.sleep(LATENCY_PACE)
        arrivals = _wait_for(receiver, LATENCY_EVENTS, 60)
        latencies = [(at - answered[ident]) * 1000 for at, ident in arrivals if ident in answered]
        harness.stop(worker)
        httpx.delete(f"{receiver}/arrivals", timeout=10)

        # Throughput: a backlog, then one worker drains it.
        queued = harness.drive(
            base, lambda i: ("POST", "/api/v1/billing/quota/consume",
                             {"json": body, "headers": headers}),
            label="queue", concurrency=8, warmup=0, seconds=300, max_requests=BACKLOG_EVENTS,
        )
        worker = _start_worker(ctx, log)
        drained = _wait_for(receiver, queued.ok, 120)
        harness.stop(worker)
        times = sorted(at for at, _ in drained)
        span = times[-1] - times[0] if len(times) > 1 else float("nan")
        per_second = round((len(times) - 1) / span, 1) if span and span > 0 else 0.0

        # Baseline: a bare loop posting the same bodies to the same receiver.
        sample = json.dumps({"type": "quota.consumed", "data": {"usage_id": "x" * 36,
                                                               "padding": "y" * 400}})
        loop_latencies: list[float] = []
        with httpx.Client(timeout=10) as client:
            began = time.perf_counter()
            for _ in range(BACKLOG_EVENTS):
                started = time.perf_counter()
                client.post(f"{receiver}/loop", content=sample,
                            headers={"Content-Type": "application/json"})
                loop_latencies.append((time.perf_counter() - started) * 1000)
            loop_seconds = time.perf_counter() - began
        loop_rate = round(BACKLOG_EVENTS / loop_seconds, 1)
    finally:
        harness.stop(receiver_process)
        log.unlink(missing_ok=True)

    result: dict[str, Any] = {
        "latency": {"events": len(latencies), "p50_ms": round(harness.percentile(latencies, 50), 1),
                    "p99_ms": round(harness.percentile(latencies, 99), 1)},
        "throughput": {"events": len(drained), "queued": queued.ok,
                       "deliveries_per_second": per_second},
        "baseline": {"posts_per_second": loop_rate,
                     "p50_ms": round(harness.percentile(loop_latencies, 50), 2)},
        "ratio": harness.ratio(per_second, loop_rate),
        "correct": len(drained) == queued.ok and len(latencies) == LATENCY_EVENTS,
    }
    print(harness.table(
        "webhooks (one worker process, local receiver)",
        ["measure", "Billable", "bare httpx loop", "ratio"],
        [
            ["commit → receiver p50 ms", result["latency"]["p50_ms"],
             result["baseline"]["p50_ms"], "-"],
            ["commit → receiver p99 ms", result["latency"]["p99_ms"], "-", "-"],
            ["deliveries/s", per_second, loop_rate, f"{result['ratio']:.0%}"],
        ],
    ))
    return result
