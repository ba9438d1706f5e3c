"""Child processes over the session's test database: the production server (gunicorn with
deploy/gunicorn.conf.py), the webhook worker, and any command run as production runs it.

They run with production settings (DEBUG off, not in test mode) except HTTPS, which loopback
cannot speak, and share the test process's Redis and cache key prefix, so cache invalidation done
in-process reaches them too. Each writes to a log file that stays readable after it exits.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from django.conf import settings
from django.db import connection

from tests.support import ROOT

GUNICORN_CONF = ROOT / "deploy" / "gunicorn.conf.py"
START_TIMEOUT = 60.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def database_url() -> str:
    """The URL of the database this test process uses (the test database, once set up)."""
    conf = connection.settings_dict
    user = quote(conf.get("USER") or "", safe="")
    password = conf.get("PASSWORD") or ""
    credentials = user + (":" + quote(password, safe="") if password else "")
    host = quote(conf.get("HOST") or "127.0.0.1", safe="")
    port = conf.get("PORT") or "5432"
    at = "@" if credentials else ""
    return f"postgres://{credentials}{at}{host}:{port}/{quote(conf['NAME'], safe='')}"


def server_env() -> dict[str, str]:
    env = dict(os.environ)
    # Not test mode: the server must run the settings production runs.
    env.pop("BILLABLE_TESTING", None)
    env.pop("TEST_DATABASE_NAME", None)
    cache: dict[str, Any] = settings.CACHES["default"]
    env.update(
        DJANGO_SETTINGS_MODULE="billing_platform.settings",
        DEBUG="false",
        SECURE_HTTPS="false",
        DATABASE_URL=database_url(),
        REDIS_URL=settings.REDIS_URL,
        CACHE_KEY_PREFIX=str(cache.get("KEY_PREFIX", "")),
        SECRET_KEY=settings.SECRET_KEY,
        API_KEY_HASH_SECRETS=settings.API_KEY_HASH_SECRETS,
        ENCRYPTION_KEYS=",".join(settings.ENCRYPTION_KEYS),
        PYTHONUNBUFFERED="1",
    )
    return env


def healthy(base_url: str, path: str = "/healthz") -> bool:
    try:
        return httpx.get(base_url + path, timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False


# --- Any child process


@dataclass
class Process:
    """A child process and its log (kept in `final_log` once the process is stopped)."""

    popen: subprocess.Popen[bytes]
    log_path: Path
    final_log: str | None = None

    def log(self) -> str:
        if self.final_log is not None:
            return self.final_log
        return self.log_path.read_text(errors="replace")

    def log_tail(self, chars: int = 3000) -> str:
        return self.log()[-chars:]

    def kill(self) -> None:
        self.popen.send_signal(signal.SIGKILL)
        self.popen.wait(10)

    def terminate(self, timeout: float = 20.0) -> int:
        self.popen.send_signal(signal.SIGTERM)
        return self.popen.wait(timeout)


def stop_process(
    popen: subprocess.Popen[bytes], timeout: float = 20.0, *, group: bool = False
) -> None:
    """SIGTERM, then SIGKILL after `timeout` seconds (to its whole process group with `group`)."""
    if popen.poll() is not None:
        return
    popen.terminate()
    try:
        popen.wait(timeout)
    except subprocess.TimeoutExpired:
        if group:
            os.killpg(popen.pid, signal.SIGKILL)
        else:
            popen.kill()
        popen.wait(10)


@contextmanager
def started(
    argv: list[str],
    env: dict[str, str],
    cwd: Path = ROOT,
    *,
    prefix: str = "billable-test-process-",
    stop_timeout: float = 20.0,
    new_session: bool = False,
) -> Iterator[Process]:
    """Run `argv` with its output in a temporary log; stopped and awaited after the block."""
    log_file = tempfile.NamedTemporaryFile(  # noqa: SIM115 - closed in the finally below
        prefix=prefix, suffix=".log", delete=False
    )
    popen = subprocess.Popen(
        argv, env=env, cwd=cwd, stdout=log_file, stderr=subprocess.STDOUT,
        start_new_session=new_session,
    )
    process = Process(popen=popen, log_path=Path(log_file.name))
    try:
        yield process
    finally:
        stop_process(popen, stop_timeout)
        log_file.close()
        process.final_log = process.log()
        process.log_path.unlink(missing_ok=True)


def wait_for(
    process: Process, what: str, condition: Callable[[], bool], timeout: float = START_TIMEOUT
) -> None:
    """Poll `condition` until it holds; fail if the process exits first or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.popen.poll() is not None:
            pytest.fail(
                f"exited with {process.popen.returncode} before {what}:\n{process.log_tail()}"
            )
        if condition():
            return
        time.sleep(0.05)
    pytest.fail(f"no {what} within {timeout:.0f} s:\n{process.log_tail()}")


def wait_until(check: Callable[[], bool], timeout: float = 15.0, message: str = "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError(message or "condition not met in time")


# --- The production server and the webhook worker


@dataclass
class Server:
    base_url: str
    process: Process
    workers: int

    def log(self) -> str:
        return self.process.log()

    def log_tail(self, chars: int = 3000) -> str:
        return self.process.log_tail(chars)


@contextmanager
def production_server(workers: int = 2) -> Iterator[Server]:
    """gunicorn with `workers` sync workers on a free loopback port; stopped and awaited after."""
    if not settings.REDIS_URL:
        pytest.fail("the e2e tests need Redis (REDIS_URL) shared with the server")
    port = free_port()
    argv = [
        sys.executable, "-m", "gunicorn", "billing_platform.wsgi",
        "-c", str(GUNICORN_CONF),
        "--bind", f"127.0.0.1:{port}",
        "--workers", str(workers),
    ]
    with started(argv, server_env(), prefix="billable-e2e-gunicorn-") as process:
        server = Server(base_url=f"http://127.0.0.1:{port}", process=process, workers=workers)
        wait_for(process, f"/healthz answer from {workers} booted workers", lambda: (
            healthy(server.base_url) and server.log().count("Booting worker with pid") >= workers
        ))
        yield server


@contextmanager
def webhook_worker(
    *,
    lease_seconds: int | None = 2,
    threads: int | None = 8,
    poll: float = 0.2,
    schedule: str = "0,0,0",
    timeout_seconds: float = 10.0,
) -> Iterator[Process]:
    """`manage.py run_webhook_worker` against the test database; stopped (SIGTERM) after.

    `lease_seconds` and `threads` of None leave the worker its own defaults.
    """
    env = server_env()
    env.update(
        WEBHOOKS_ALLOW_PRIVATE_NETWORKS="true",
        WEBHOOK_RETRY_SCHEDULE=schedule,
        WEBHOOK_TIMEOUT_SECONDS=f"{timeout_seconds:g}",
    )
    if lease_seconds is not None:
        env["WEBHOOK_LEASE_SECONDS"] = str(lease_seconds)
    argv = [sys.executable, str(ROOT / "manage.py"), "run_webhook_worker", "--poll", str(poll)]
    if threads is not None:
        argv += ["--threads", str(threads)]
    with started(
        argv, env, prefix="billable-webhook-worker-", stop_timeout=15.0, new_session=True
    ) as worker:
        wait_for(worker, "webhook worker start", lambda: "webhook worker started" in worker.log(),
                 timeout=30)
        time.sleep(0.2)  # LISTEN is set up right after the start line
        yield worker
