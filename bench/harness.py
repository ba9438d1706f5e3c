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
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import unquote, urlsplit, urlunsplit

import httpx
import psycopg
from psycopg.conninfo import make_conninfo

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
GUNICORN_CONF = ROOT / "deploy" / "gunicorn.conf.py"
PYTHON = sys.executable
DB_NAME = os.environ.get("BENCH_DATABASE_NAME", "billable_bench")
CACHE_PREFIX = os.environ.get("BENCH_CACHE_KEY_PREFIX", "billable-bench")
T = TypeVar("T")
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


def bench_database_url(name: str = DB_NAME) -> str:
    """DATABASE_URL (as the launcher found it) with a benchmark's own database name."""
    url = os.environ.get("DATABASE_URL")
    if not url:
        raise SystemExit("DATABASE_URL is not set: run through `make bench` (the launcher).")
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + name))


def pg_params(url: str) -> dict[str, str]:
    parts = urlsplit(url)
    return {
        "host": unquote(parts.hostname or "127.0.0.1"),
        "port": str(parts.port or 5432),
        "user": unquote(parts.username or "postgres"),
        "password": unquote(parts.password or ""),
        "dbname": unquote(parts.path.lstrip("/")),
    }


def connect(url: str, *, dbname: str | None = None) -> psycopg.Connection[tuple[Any, ...]]:
    """An autocommit connection to the database of `url` (or to `dbname` on the same server)."""
    params = pg_params(url)
    if dbname is not None:
        params["dbname"] = dbname
    return psycopg.connect(make_conninfo(**params), autocommit=True)


def recreate_database(url: str) -> None:
    """Drop and create the benchmark's database. With BENCH_CITUS_CLUSTER (the path of
    deploy/citus/cluster.sh, the cluster running and DATABASE_URL its coordinator) the database
    is made on every node with Citus and the nodes registered, as `cluster.sh createdb` does."""
    name = pg_params(url)["dbname"]
    cluster = os.environ.get("BENCH_CITUS_CLUSTER")
    if cluster:
        subprocess.run([cluster, "dropdb", name], check=True)
        subprocess.run([cluster, "createdb", name], check=True, stdout=subprocess.DEVNULL)
        return
    with connect(url, dbname="postgres") as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def server_env(url: str, *, root: Path = ROOT, cache_prefix: str = CACHE_PREFIX) -> dict[str, str]:
    """The environment of a server (and of manage.py) running the code of the tree at `root`."""
    env = dict(os.environ)
    for name in ("BILLABLE_TESTING", "TEST_DATABASE_NAME", "GUNICORN_CONTROL_SOCKET"):
        env.pop(name, None)
    env.update(
        DJANGO_SETTINGS_MODULE="billing_platform.settings",
        DATABASE_URL=url,
        CACHE_KEY_PREFIX=cache_prefix,
        DEBUG="false",
        SECURE_HTTPS="false",
        WEBHOOKS_ALLOW_PRIVATE_NETWORKS="true",
        PYTHONUNBUFFERED="1",
        LOG_LEVEL="WARNING",
        # The tree's own packages come before the editable install of this checkout.
        PYTHONPATH=str(root),
    )
    return env


def check_imports(root: Path, env: dict[str, str]) -> None:
    """Fail unless Python started in `root` with `env` imports the project from `root`."""
    probe = (
        "import json, billable, billing_platform, tenants; "
        "print(json.dumps([m.__file__ for m in (billable, billing_platform, tenants)]))"
    )
    done = subprocess.run([PYTHON, "-c", probe], env=env, cwd=root, capture_output=True,
                          text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"importing the project from {root} failed:\n{done.stderr[-2000:]}")
    files = [Path(f).resolve() for f in json.loads(done.stdout.strip().splitlines()[-1])]
    stray = [str(f) for f in files if not f.is_relative_to(root.resolve())]
    if stray:
        raise SystemExit(f"the code served for {root} would come from elsewhere: {stray}")


def migrate(root: Path, env: dict[str, str]) -> None:
    """`manage.py migrate_schemas` of the tree at `root`, run from that tree."""
    (root / "var" / "static").mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [PYTHON, str(root / "manage.py"), "migrate_schemas", "--noinput", "-v", "0"],
        env=env, cwd=root, check=True,
    )


def prepare() -> dict[str, str]:
    """Recreate the benchmark database, migrate it and set Django up in this process."""
    url = bench_database_url()
    say(f"recreating database {DB_NAME}")
    recreate_database(url)
    env = server_env(url)
    check_imports(ROOT, env)
    migrate(ROOT, env)
    os.environ.update(env)
    import django

    django.setup()
    clear_cache_prefix(CACHE_PREFIX)
    return env


def clear_cache_prefix(prefix: str) -> None:
    """Remove what an earlier run left under a benchmark's cache prefix."""
    redis_url = os.environ.get("REDIS_URL")
    if not redis_url:
        return
    import redis

    client = redis.Redis.from_url(redis_url)
    for key in client.scan_iter(f"{prefix}:*", count=1000):
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


def spawn(argv: list[str], env: dict[str, str], log_path: Path, *,
          cwd: Path = ROOT) -> subprocess.Popen[bytes]:
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            argv, env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT,
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
    env: dict[str, str], *, root: Path = ROOT, workers: int = 4, worker_class: str = "sync",
    threads: int = 1,
) -> Iterator[Server]:
    """gunicorn -c deploy/gunicorn.conf.py billing_platform.wsgi on a free loopback port, run
    in the tree at `root` (its code, its deploy/ settings)."""
    port = free_port()
    log_path = Path(tempfile.mkstemp(prefix="billable-bench-gunicorn-", suffix=".log")[1])
    argv = [
        PYTHON, "-m", "gunicorn", "billing_platform.wsgi",
        "-c", str(root / GUNICORN_CONF.relative_to(ROOT)),
        "--bind", f"127.0.0.1:{port}", "--workers", str(workers),
        "--worker-class", worker_class, "--threads", str(threads),
        # No gunicorn access log: production has none (deploy/gunicorn.conf.py), and writing one
        # line per request cost the workers about 8 % of their CPU.
        "--log-level", "info",
    ]
    process = spawn(argv, env, log_path, cwd=root)
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


# --- Where the cores went: the server, the load client, PostgreSQL and the rest of the machine.

# The title PostgreSQL gives a backend: "postgres: [cluster: ]user database host(port) state".
_BACKEND = re.compile(r"^postgres: (?:\S+: )?\S+ (\S+) (?:\S+\(\d+\)|\[local\])")
_AUTOVACUUM = re.compile(r"^postgres: (?:\S+: )?autovacuum worker (\S+)")


def _proc_cpu_seconds(stat_path: Path) -> float:
    fields = stat_path.read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def postgres_cpu_seconds(database: str) -> float:
    """CPU seconds used so far by the backends of `database` and by PostgreSQL's own processes
    (postmaster, WAL writer, checkpointer, ...); other databases' backends are left out, since
    other work on the machine (tests) may be running there."""
    total = 0.0
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if (proc / "comm").read_text().strip() != "postgres":
                continue
            title = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            backend = _BACKEND.match(title) or _AUTOVACUUM.match(title)
            if backend is not None and backend.group(1) != database:
                continue
            total += _proc_cpu_seconds(proc / "stat")
        except (OSError, IndexError, ValueError):
            continue  # gone meanwhile
    return total


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine (every core) spent busy so far, from /proc/stat."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def own_cpu_seconds() -> float:
    """CPU seconds of this process (the Python load client runs in it)."""
    times = os.times()
    return times.user + times.system


@dataclass(frozen=True)
class CpuSample:
    wall: float
    server: float
    postgres: float
    machine: float


def cpu_sample(server_pid: int, database: str) -> CpuSample:
    return CpuSample(wall=time.monotonic(), server=tree_cpu_seconds(server_pid),
                     postgres=postgres_cpu_seconds(database), machine=machine_busy_seconds())


def cpu_shares(before: CpuSample, after: CpuSample, *, requests: int,
               client_seconds: float) -> dict[str, float]:
    """CPU per request of the server, PostgreSQL and the load client, and the share of the
    machine's cores each used over the same wall time (other: the rest of the busy time)."""
    wall = max(after.wall - before.wall, 1e-9)
    capacity = wall * (os.cpu_count() or 1)
    used = {
        "server": after.server - before.server,
        "postgres": after.postgres - before.postgres,
        "client": client_seconds,
    }
    busy = after.machine - before.machine
    shares: dict[str, float] = {}
    for part, seconds in used.items():
        shares[f"{part}_cpu_ms_per_request"] = round(seconds * 1000 / max(1, requests), 2)
    for part, seconds in used.items():
        shares[f"{part}_cpu_share"] = round(seconds / capacity, 3)
    shares["machine_busy_share"] = round(busy / capacity, 3)
    shares["other_cpu_share"] = round(max(0.0, busy - sum(used.values())) / capacity, 3)
    return shares


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


def drive_measured(server: Server, database: str, make: Request, *, label: str,
                   concurrency: int) -> Run:
    """drive() against `server`, with the CPU shares of the server, of PostgreSQL (the backends
    of `database`) and of this process, the load client, over the whole run, in `extra`."""
    before = cpu_sample(server.process.pid, database)
    client_before = own_cpu_seconds()
    result = drive(server.base_url, make, label=label, concurrency=concurrency)
    client_seconds = own_cpu_seconds() - client_before
    after = cpu_sample(server.process.pid, database)
    served = result.extra["total_ok"] + result.extra["total_failed"]
    result.extra["client"] = "python"
    result.extra.update(cpu_shares(before, after, requests=served, client_seconds=client_seconds))
    return result


def mean_run(runs: list[Run]) -> Run:
    """One summary of repeated runs of a point: counts summed, rates, latency percentiles and
    CPU figures averaged over the runs (each run is kept in `extra["runs"]`)."""
    first = runs[0]
    if len(runs) == 1:
        return first
    statuses: dict[str, int] = {}
    for one in runs:
        for status, n in one.statuses.items():
            statuses[status] = statuses.get(status, 0) + n
    extra: dict[str, Any] = {}
    for name, value in first.extra.items():
        values = [one.extra.get(name) for one in runs]
        if all(isinstance(v, int) and not isinstance(v, bool) for v in values):
            extra[name] = sum(v for v in values if isinstance(v, int))  # counts
        elif all(isinstance(v, float) for v in values):
            extra[name] = round(statistics.fmean(v for v in values if isinstance(v, float)), 3)
        else:
            extra[name] = value
    extra["runs"] = [one.as_dict() for one in runs]

    def mean(values: list[float]) -> float:
        return round(statistics.fmean(values), 2)

    return Run(
        label=first.label,
        concurrency=first.concurrency,
        seconds=round(sum(one.seconds for one in runs), 2),
        requests=sum(one.requests for one in runs),
        ok=sum(one.ok for one in runs),
        errors=sum(one.errors for one in runs),
        statuses=dict(sorted(statuses.items())),
        rps=round(statistics.fmean(one.rps for one in runs), 1),
        p50_ms=mean([one.p50_ms for one in runs]),
        p95_ms=mean([one.p95_ms for one in runs]),
        p99_ms=mean([one.p99_ms for one in runs]),
        extra=extra,
    )


def abba(sides: Sequence[T]) -> list[T]:
    """The order of the runs of one point: A, B, B, A for two sides (drift on a shared machine
    then weighs on both alike); one run for a single side."""
    return list(sides) if len(sides) < 2 else [*sides, *reversed(sides)]


# --- pgbench: the database's own ceiling for the same statements.


class PgbenchFailed(RuntimeError):
    """pgbench could not run a script (its output says why)."""


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
            defines: dict[str, str] | None = None, protocol: str = "simple") -> PgbenchRun:
    """Run `script` with `clients` connections for `seconds` (`protocol`: pgbench's -M);
    per-transaction latencies."""
    params = pg_params(url)
    seconds = SECONDS if seconds is None else seconds
    with tempfile.TemporaryDirectory(prefix="billable-bench-pgbench-") as folder:
        script_path = Path(folder) / "script.sql"
        script_path.write_text(script)
        prefix = Path(folder) / "log"
        argv = [
            pgbench_path(), "-n", "-h", params["host"], "-p", params["port"],
            "-U", params["user"], "-c", str(clients), "-j", str(min(clients, 2)),
            "-T", str(max(1, round(seconds))), "-f", str(script_path), "-M", protocol,
            "-l", "--log-prefix", str(prefix),
        ]
        for name, value in (defines or {}).items():
            argv += ["-D", f"{name}={value}"]
        argv.append(params["dbname"])
        env = dict(os.environ, PGPASSWORD=params["password"]) if params["password"] else None
        done = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)
        if done.returncode not in (0, 2):
            raise PgbenchFailed(f"pgbench failed:\n{done.stdout}\n{done.stderr[-2000:]}")
        latencies: list[float] = []
        for log in Path(folder).glob("log*"):
            for line in log.read_text().splitlines():
                fields = line.split()
                if len(fields) >= 3 and fields[2].isdigit():
                    latencies.append(int(fields[2]) / 1000)
    tps_match = re.search(r"tps = ([\d.]+)", done.stdout)
    if "aborted" in done.stderr or not tps_match:
        raise PgbenchFailed(f"pgbench failed:\n{done.stdout}\n{done.stderr[-2000:]}")
    failed_match = re.search(r"number of failed transactions: (\d+)", done.stdout)
    return PgbenchRun(
        clients=clients,
        tps=round(float(tps_match.group(1)), 1) if tps_match else 0.0,
        p50_ms=round(percentile(latencies, 50), 2),
        p99_ms=round(percentile(latencies, 99), 2),
        failed=int(failed_match.group(1)) if failed_match else 0,
    )


# --- SQL capture: the statements one request issues, as the server would send them.


@dataclass(frozen=True)
class Capture:
    status: int
    statements: list[str]
    # "prepared" when every statement went to the server bound and prepared, else "simple".
    protocol: str


def capture_statements(method: str, path: str, *, key: str, body: Any = None,
                       params: dict[str, Any] | None = None) -> Capture:
    """Run one request in this process (warm key cache) and return its SQL statements, each
    with its parameters in place, and how they reached the server."""
    from django.db import connection
    from django.test import Client

    seen: list[tuple[str, bool]] = []

    def record(execute: Callable[..., Any], sql: str, sql_params: Any, many: bool,
               context: dict[str, Any]) -> Any:
        try:
            # As Django renders a statement for its query log (psycopg's client-side binding).
            text = psycopg.ClientCursor(connection.connection).mogrify(sql, sql_params)
        except psycopg.DataError as exc:
            raise PgbenchFailed(f"{method} {path}: no literal form of {sql[:200]}: {exc}") from exc
        # Django's own cursors bind on the client; a server-binding cursor prepares.
        raw = getattr(context["cursor"], "cursor", None)
        seen.append((text, raw is not None and not isinstance(raw, psycopg.ClientCursor)))
        return execute(sql, sql_params, many, context)

    client = Client(HTTP_HOST="127.0.0.1", HTTP_X_API_KEY=key)
    with connection.execute_wrapper(record):
        if method == "POST":
            response = client.post(path, data=json.dumps(body), content_type="application/json")
        else:
            response = client.get(path, params or {})
    prepared = bool(seen) and all(server for _text, server in seen)
    return Capture(status=response.status_code, statements=[text for text, _server in seen],
                   protocol="prepared" if prepared else "simple")


def to_sql_script(statements: list[str]) -> str:
    """pgbench's script language wants one statement per line (or `\\` continuations)."""
    lines = []
    for statement in statements:
        lines.append(" ".join(statement.split()) + ";")
    return "\n".join(lines) + "\n"


# --- Output.

# A table to print or render: its title, its header and its rows.
Table = tuple[str, list[str], list[list[Any]]]


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
