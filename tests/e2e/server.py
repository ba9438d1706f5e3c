"""The production server for black-box tests: gunicorn with deploy/gunicorn.conf.py.

The server runs in its own processes over the session's test database, with production settings
(DEBUG off, not in test mode) except HTTPS, which loopback cannot speak. It shares the test
process's Redis and cache key prefix, so cache invalidation done in-process reaches it too.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from django.conf import settings
from django.db import connection

ROOT = Path(__file__).resolve().parents[2]
GUNICORN_CONF = ROOT / "deploy" / "gunicorn.conf.py"
START_TIMEOUT = 60.0


@dataclass
class Server:
    base_url: str
    process: subprocess.Popen[bytes]
    log_path: Path
    workers: int

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def log_tail(self, chars: int = 3000) -> str:
        return self.log()[-chars:]


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


def _wait_until_serving(server: Server) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            pytest.fail(f"gunicorn exited with {server.process.returncode}:\n{server.log_tail()}")
        booted = server.log().count("Booting worker with pid")
        try:
            ready = httpx.get(f"{server.base_url}/healthz", timeout=1.0).status_code == 200
        except httpx.HTTPError:
            ready = False
        if ready and booted >= server.workers:
            return
        time.sleep(0.1)
    pytest.fail(f"gunicorn did not serve within {START_TIMEOUT:.0f} s:\n{server.log_tail()}")


@contextmanager
def production_server(workers: int = 2) -> Iterator[Server]:
    """gunicorn with `workers` sync workers on a free loopback port; stopped and awaited after."""
    if not settings.REDIS_URL:
        pytest.fail("the e2e tests need Redis (REDIS_URL) shared with the server")
    port = free_port()
    log_file = tempfile.NamedTemporaryFile(  # noqa: SIM115 - closed in the finally below
        prefix="billable-e2e-gunicorn-", suffix=".log", delete=False
    )
    argv = [
        sys.executable, "-m", "gunicorn", "billing_platform.wsgi",
        "-c", str(GUNICORN_CONF),
        "--bind", f"127.0.0.1:{port}",
        "--workers", str(workers),
    ]
    process = subprocess.Popen(
        argv, env=server_env(), cwd=ROOT, stdout=log_file, stderr=subprocess.STDOUT
    )
    server = Server(
        base_url=f"http://127.0.0.1:{port}",
        process=process,
        log_path=Path(log_file.name),
        workers=workers,
    )
    try:
        _wait_until_serving(server)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
        log_file.close()
        Path(log_file.name).unlink(missing_ok=True)
