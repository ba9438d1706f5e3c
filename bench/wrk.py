"""wrk, a load client written in C, beside the Python one (which costs about as much CPU as the
server it measures): the same points with most of the machine left to the server.

bench/wrk.lua makes every request afresh (a random customer, a fresh Idempotency-Key when asked),
counts what it sent and each answer by status, and prints one parseable line at the end.
"""

from __future__ import annotations

import functools
import json
import math
import os
import shutil
import tempfile
import time
from pathlib import Path

from bench import fixtures, harness

LUA = Path(__file__).with_name("wrk.lua")
THREADS = 2


def missing() -> str | None:
    """Why wrk cannot run here, or None."""
    if shutil.which("wrk") is None:
        return ("wrk is missing: `apt-get install wrk` (Debian), or run `make bench` as root "
                "where apt-get exists, which installs it")
    return None


def _run_once(base_url: str, *, endpoint: str, key: str, action_type: str, shape: str,
              idem: bool, connections: int, seconds: float,
              customers: int) -> tuple[harness.Run, float]:
    """One wrk run; its Run and the CPU seconds wrk used (from its rusage when reaped)."""
    wrk = shutil.which("wrk")
    assert wrk is not None
    duration = max(1, math.ceil(seconds))
    argv = [
        wrk, f"-t{min(THREADS, connections)}", f"-c{connections}", f"-d{duration}s", "--latency",
        "--timeout", "30s", "-s", str(LUA), base_url, "--",
        endpoint, key, fixtures.FEATURE, action_type, shape, "idem" if idem else "plain",
        str(customers),
    ]
    log_path = Path(tempfile.mkstemp(prefix="billable-bench-wrk-", suffix=".log")[1])
    try:
        process = harness.spawn(argv, dict(os.environ), log_path)
        _pid, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        harness.stop(process)
        output = log_path.read_text(errors="replace")
    finally:
        log_path.unlink(missing_ok=True)
    lines = [line for line in output.splitlines() if line.startswith("WRK_RESULT ")]
    if process.returncode != 0 or not lines:
        raise SystemExit(f"wrk failed ({process.returncode}):\n{output[-3000:]}")
    data = json.loads(lines[-1].removeprefix("WRK_RESULT "))
    statuses = {str(k): int(v) for k, v in sorted(data["statuses"].items())}
    ok = statuses.get("200", 0)
    elapsed = data["duration_us"] / 1e6
    requests = int(data["requests"])
    socket_errors = sum(int(data["errors"][k]) for k in ("connect", "read", "write", "timeout"))
    run = harness.Run(
        label=action_type,
        concurrency=connections,
        seconds=round(elapsed, 2),
        requests=requests,
        ok=ok,
        errors=data["answered"] - ok + socket_errors,
        statuses=statuses,
        rps=round(requests / elapsed, 1) if elapsed > 0 else 0.0,
        p50_ms=round(data["p50_us"] / 1000, 2),
        p95_ms=round(data["p95_us"] / 1000, 2),
        p99_ms=round(data["p99_us"] / 1000, 2),
        extra={
            "client": "wrk+idempotency-key" if idem else "wrk",
            "total_ok": ok,
            "total_failed": data["answered"] - ok,
            "non_2xx": sum(n for s, n in statuses.items() if not 200 <= int(s) < 300),
            "sent": data["sent"],
            "answered": data["answered"],
            # Sent but not answered before wrk stopped: the server may still have done them.
            "unanswered": data["sent"] - data["answered"],
            "socket_errors": socket_errors,
        },
    )
    return run, usage.ru_utime + usage.ru_stime


def measure(server: harness.Server, database: str, *, endpoint: str, key: str, action_type: str,
            shape: str, idem: bool = False, connections: int = 16,
            customers: int = 1000) -> harness.Run:
    """A warm-up run, then the measured run (`wrk -t2 -c16 -d<seconds> --latency`), with the
    CPU shares of the server, PostgreSQL and wrk over the measured run. Counts of both runs are
    kept (`total_ok`, `unanswered` over both), since every answer counts for the checks."""
    once = functools.partial(
        _run_once, server.base_url, endpoint=endpoint, key=key, action_type=action_type,
        shape=shape, idem=idem, connections=connections, customers=customers,
    )
    warm, _ = once(seconds=harness.WARMUP)
    before = harness.cpu_sample(server.process.pid, database)
    run, client_seconds = once(seconds=harness.SECONDS)
    after = harness.cpu_sample(server.process.pid, database)
    run.extra.update(harness.cpu_shares(before, after, requests=run.extra["answered"],
                                        client_seconds=client_seconds))
    for name in ("total_ok", "total_failed", "unanswered"):
        run.extra[name] += warm.extra[name]
    time.sleep(0.3)  # let the server finish what wrk left unanswered before a check reads
    return run
