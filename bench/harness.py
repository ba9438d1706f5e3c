"""What every benchmark shares: its own database, the production server, a load driver, pgbench.

The benchmarks run against their own database (`billable_bench`, recreated on every run) and
their own cache key prefix, so they never touch the development or test data. The server is the
production command (gunicorn with deploy/gunicorn.conf.py) on a free loopback port.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

import httpx

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
GUNICORN_CONF = ROOT / "deploy" / "gunicorn.conf.py"
PYTHON = sys.executable
DB_NAME = os.environ.get("BENCH_DATABASE_NAME", "billable_bench")
CACHE_PREFIX = os.environ.get("BENCH_CACHE_KEY_PREFIX", "billable-bench")
# Seconds per measured point and of warm-up before it (BENCH_SECONDS / BENCH_WARMUP override).
SECONDS = float(os.environ.get("BENCH_SECONDS", "6"))
WARMUP = float(os.environ.get("BENCH_WARMUP", "2"))


def say(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- The benchmark database and Django in this process.


def bench_database_url() -> str:
    """DATABASE_URL (as the launcher found it) with the benchmark's own database name."""
    url = os.environ.get("DATABASE_URL")
    if not url:
        raise SystemExit("DATABASE_URL is not set: run through `make bench` (the launcher).")
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + DB_NAME))


def pg_params(url: str) -> dict[str, str]:
    parts = urlsplit(url)
    return {
        "host": unquote(parts.hostname or "127.0.0.1"),
        "port": str(parts.port or 5432),
        "user": unquote(parts.username or "postgres"),
        "password": unquote(parts.password or ""),
        "dbname": unquote(parts.path.lstrip("/")),
    }


def recreate_database(url: str) -> None:
    import psycopg

    params = pg_params(url)
    name = params.pop("dbname")
    with psycopg.connect(**params, dbname="postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def server_env(url: str) -> dict[str, str]:
    env = dict(os.environ)
    for name in ("BILLABLE_TESTING", "TEST_DATABASE_NAME", "GUNICORN_CONTROL_SOCKET"):
        env.pop(name, None)
    env.update(
        DJANGO_SETTINGS_MODULE="billing_platform.settings",
        DATABASE_URL=url,
        CACHE_KEY_PREFIX=CACHE_PREFIX,
        DEBUG="false",
        SECURE_HTTPS="false",
        WEBHOOKS_ALLOW_PRIVATE_NETWORKS="true",
        PYTHONUNBUFFERED="1",
        LOG_LEVEL="WARNING",
    )
    return env


def prepare() -> dict[str, str]:
    """Recreate the benchmark database, migrate it and set Django up in this process."""
    url = bench_database_url()
    say(f"recreating database {DB_NAME}")
    recreate_database(url)
    env = server_env(url)
    (ROOT / "var" / "static").mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [PYTHON, str(ROOT / "manage.py"), "migrate_schemas", "--noinput", "-v", "0"],
        env=env, cwd=ROOT, check=True,
    )
    os.environ.update(env)
    import django

    django.setup()
    _clear_prefix()
    return env


def _clear_prefix() -> None:
    """Remove what an earlier run left under the benchmark's cache prefix."""
    from django.conf import settings

    if not settings.REDIS_URL:
        return
    import redis

    client = redis.Redis.from_url(settings.REDIS_URL)
    for key in client.scan_iter(f"{CACHE_PREFIX}:*", count=1000):
        client.delete(key)


def platform_key() -> str:
    from tenants.services import platform_key_create

    _key, raw = platform_key_create(name=f"bench-{time.time_ns()}")
    return raw


# --- The production server.


@dataclass
class Server:
    base_url: str
    process: subprocess.Popen[bytes]
    log_path: Path
    workers: int
    worker_class: str
    threads: int

    def describe(self) -> str:
        if self.worker_class == "gthread":
            return f"{self.workers} gthread workers x {self.threads} threads"
        return f"{self.workers} sync workers"


_RUNNING: list[subprocess.Popen[bytes]] = []


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


def stop_all() -> None:
    """Stop every process the benchmarks started (also on Ctrl-C)."""
    while _RUNNING:
        _stop(_RUNNING.pop())


def spawn(argv: list[str], env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            argv, env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    _RUNNING.append(process)
    return process


def stop(process: subprocess.Popen[bytes]) -> None:
    _stop(process)
    if process in _RUNNING:
        _RUNNING.remove(process)


@contextmanager
def production_server(
    env: dict[str, str], *, workers: int = 4, worker_class: str = "sync", threads: int = 1
) -> Iterator[Server]:
    """gunicorn -c deploy/gunicorn.conf.py billing_platform.wsgi on a free loopback port."""
    port = free_port()
    log_path = Path(tempfile.mkstemp(prefix="billable-bench-gunicorn-", suffix=".log")[1])
    argv = [
        PYTHON, "-m", "gunicorn", "billing_platform.wsgi", "-c", str(GUNICORN_CONF),
        "--bind", f"127.0.0.1:{port}", "--workers", str(workers),
        "--worker-class", worker_class, "--threads", str(threads),
        "--access-logfile", str(log_path.with_suffix(".access")), "--log-level", "info",
    ]
    process = spawn(argv, env, log_path)
    server = Server(f"http://127.0.0.1:{port}", process, log_path, workers, worker_class, threads)
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise SystemExit(f"gunicorn exited:\n{log_path.read_text()[-3000:]}")
            booted = log_path.read_text(errors="replace").count("Booting worker")
            try:
                ready = httpx.get(f"{server.base_url}/healthz", timeout=1).status_code == 200
            except httpx.HTTPError:
                ready = False
            if ready and booted >= workers:
                break
            if time.monotonic() > deadline:
                raise SystemExit(f"gunicorn did not start:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.1)
        yield server
    finally:
        stop(process)
        log_path.unlink(missing_ok=True)
        log_path.with_suffix(".access").unlink(missing_ok=True)


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds (user + system) used so far by a process and its children (gunicorn's
    workers): a figure that other work on the machine does not inflate, unlike latency."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        own = int(stat.parent.name)
        if own == pid or int(fields[1]) == pid:
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


# --- The load driver: a closed loop of `concurrency` async clients.


@dataclass
class Run:
    label: str
    concurrency: int
    seconds: float
    requests: int
    ok: int
    errors: int
    statuses: dict[str, int]
    rps: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]


Request = Callable[[int], tuple[str, str, dict[str, Any]]]


async def _drive(
    base_url: str, make: Request, concurrency: int, warmup: float, seconds: float,
    max_requests: int | None, ok_statuses: frozenset[int],
) -> tuple[list[float], dict[int, int], int, int, float]:
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    counter = {"next": 0, "ok": 0, "failed": 0}
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=30) as client:
        start = time.perf_counter()
        measure_from = start + warmup
        stop_at = measure_from + seconds

        async def worker() -> None:
            while True:
                now = time.perf_counter()
                if now >= stop_at:
                    return
                if max_requests is not None and counter["next"] >= max_requests:
                    return
                index = counter["next"]
                counter["next"] += 1
                method, url, kwargs = make(index)
                began = time.perf_counter()
                try:
                    response = await client.request(method, url, **kwargs)
                    status = response.status_code
                except httpx.HTTPError:
                    status = 0
                ended = time.perf_counter()
                # Every answer counts for correctness; only the measured window for speed.
                if status in ok_statuses:
                    counter["ok"] += 1
                else:
                    counter["failed"] += 1
                if began >= measure_from and ended <= stop_at:
                    latencies.append((ended - began) * 1000)
                    statuses[status] = statuses.get(status, 0) + 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = min(time.perf_counter(), stop_at) - measure_from
    return latencies, statuses, counter["ok"], counter["failed"], elapsed


def drive(
    base_url: str, make: Request, *, label: str, concurrency: int,
    warmup: float | None = None, seconds: float | None = None, max_requests: int | None = None,
    ok_statuses: frozenset[int] = frozenset({200}),
) -> Run:
    """Warm up, then measure `seconds` of a closed loop; every request is counted for checks."""
    warmup = WARMUP if warmup is None else warmup
    seconds = SECONDS if seconds is None else seconds
    latencies, statuses, ok, failed, elapsed = asyncio.run(
        _drive(base_url, make, concurrency, warmup, seconds, max_requests, ok_statuses)
    )
    measured = len(latencies)
    errors = sum(n for status, n in statuses.items() if status not in ok_statuses)
    return Run(
        label=label,
        concurrency=concurrency,
        seconds=round(elapsed, 2),
        requests=measured,
        ok=ok,
        errors=errors,
        statuses={str(k): v for k, v in sorted(statuses.items())},
        rps=round(measured / elapsed, 1) if elapsed > 0 else 0.0,
        p50_ms=round(percentile(latencies, 50), 2),
        p95_ms=round(percentile(latencies, 95), 2),
        p99_ms=round(percentile(latencies, 99), 2),
        extra={"total_ok": ok, "total_failed": failed},
    )


# --- pgbench: the database's own ceiling for the same statements.


@dataclass
class PgbenchRun:
    clients: int
    tps: float
    p50_ms: float
    p99_ms: float
    failed: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def pgbench_path() -> str:
    found = shutil.which("pgbench") or (
        "/usr/bin/pgbench" if Path("/usr/bin/pgbench").exists() else None
    )
    if not found:
        raise SystemExit("pgbench is missing: install postgresql-client (Debian).")
    return found


def pgbench(url: str, script: str, *, clients: int, seconds: float | None = None,
            defines: dict[str, str] | None = None) -> PgbenchRun:
    """Run `script` with `clients` connections for `seconds`; per-transaction latencies."""
    params = pg_params(url)
    seconds = SECONDS if seconds is None else seconds
    with tempfile.TemporaryDirectory(prefix="billable-bench-pgbench-") as folder:
        script_path = Path(folder) / "script.sql"
        script_path.write_text(script)
        prefix = Path(folder) / "log"
        argv = [
            pgbench_path(), "-n", "-h", params["host"], "-p", params["port"],
            "-U", params["user"], "-c", str(clients), "-j", str(min(clients, 2)),
            "-T", str(max(1, round(seconds))), "-f", str(script_path),
            "-l", "--log-prefix", str(prefix),
        ]
        for name, value in (defines or {}).items():
            argv += ["-D", f"{name}={value}"]
        argv.append(params["dbname"])
        env = dict(os.environ, PGPASSWORD=params["password"]) if params["password"] else None
        done = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)
        if done.returncode not in (0, 2):
            raise SystemExit(f"pgbench failed:\n{done.stdout}\n{done.stderr}")
        latencies: list[float] = []
        for log in Path(folder).glob("log*"):
            for line in log.read_text().splitlines():
                fields = line.split()
                if len(fields) >= 3 and fields[2].isdigit():
                    latencies.append(int(fields[2]) / 1000)
    tps_match = re.search(r"tps = ([\d.]+)", done.stdout)
    if "aborted" in done.stderr or not tps_match:
        raise SystemExit(f"pgbench failed:\n{done.stdout}\n{done.stderr[-2000:]}")
    failed_match = re.search(r"number of failed transactions: (\d+)", done.stdout)
    return PgbenchRun(
        clients=clients,
        tps=round(float(tps_match.group(1)), 1) if tps_match else 0.0,
        p50_ms=round(percentile(latencies, 50), 2),
        p99_ms=round(percentile(latencies, 99), 2),
        failed=int(failed_match.group(1)) if failed_match else 0,
    )


# --- SQL capture: the statements one request issues, as the server would send them.


def capture_statements(method: str, path: str, *, key: str, body: Any = None,
                       params: dict[str, Any] | None = None) -> tuple[int, list[str]]:
    """Run one request in this process (warm key cache) and return its SQL statements."""
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    client = Client(HTTP_HOST="127.0.0.1", HTTP_X_API_KEY=key)
    with CaptureQueriesContext(connection) as captured:
        if method == "POST":
            response = client.post(path, data=json.dumps(body), content_type="application/json")
        else:
            response = client.get(path, params or {})
    return response.status_code, [q["sql"] for q in captured.captured_queries]


def to_sql_script(statements: list[str]) -> str:
    """pgbench's script language wants one statement per line (or `\\` continuations)."""
    lines = []
    for statement in statements:
        lines.append(" ".join(statement.split()) + ";")
    return "\n".join(lines) + "\n"


# --- Output.


def table(title: str, header: list[str], rows: list[list[Any]]) -> str:
    cells = [[str(c) for c in header]] + [[_fmt(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = [title, "  ".join(h.ljust(w) for h, w in zip(cells[0], widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    for row in cells[1:]:
        lines.append("  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)))
    return "\n".join(lines)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.1f}" if abs(value) >= 100 else f"{value:.2f}"
    return str(value)


def machine() -> dict[str, Any]:
    memory = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory = int(line.split()[1]) // 1024
    except OSError:
        pass
    return {
        # Other work on the machine lowers every figure; the load average says how busy it was.
        "load_average_1_5_15": [round(v, 2) for v in os.getloadavg()],
        "cpus": os.cpu_count(),
        "memory_mib": memory,
        "python": platform.python_version(),
        "system": platform.platform(),
    }


def write_result(name: str, data: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    payload = {
        "benchmark": name,
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": machine(),
        "seconds_per_point": SECONDS,
        "warmup_seconds": WARMUP,
        **data,
    }
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    return path


def ratio(value: float, baseline: float) -> float:
    return round(value / baseline, 3) if baseline else float("nan")


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def install_signal_handlers() -> None:
    """Ctrl-C and SIGTERM end the run through `finally` blocks, which stop every process."""

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)
