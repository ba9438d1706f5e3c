"""`make run` as a new user meets it: the real launcher on a pseudo-terminal, then in a pipe.

The launcher runs against a database of its own (created by it, dropped after), this session's
Redis, a var/ folder of its own (BILLABLE_VAR_DIR) and a free port; its terminal is a real
pseudo-terminal (the pty module), so what it decides by `isatty()` is what a person would see.
"""

from __future__ import annotations

import json
import os
import pty
import re
import secrets
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx
import psycopg
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support import ROOT
from tests.support.processes import database_url, free_port, server_env

pytestmark = pytest.mark.e2e

READY = "Billable is running on"
START_TIMEOUT = 300.0  # a first run migrates a new database from zero on a slow machine
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


@dataclass
class Launcher:
    process: subprocess.Popen[bytes]
    master: int | None
    base_url: str
    chunks: list[bytes] = field(default_factory=list)
    reader: threading.Thread | None = None

    def raw(self) -> str:
        return b"".join(self.chunks).decode("utf-8", "replace")

    def text(self) -> str:
        """What the screen shows, line by line: colours dropped, progress rewrites resolved."""
        lines = []
        for line in self.raw().replace("\r\n", "\n").split("\n"):
            lines.append(ANSI.sub("", line.split("\r")[-1]))
        return "\n".join(lines)

    def wait_for(self, needle: str, timeout: float = START_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while needle not in self.text():
            if self.process.poll() is not None:
                time.sleep(0.5)  # the last output still in the pipe
                if needle in self.text():
                    return
                pytest.fail(f"the launcher exited ({self.process.returncode}):\n{self.text()}")
            if time.monotonic() > deadline:
                pytest.fail(f"no {needle!r} within {timeout:.0f} s:\n{self.text()}")
            time.sleep(0.2)

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
        try:
            return self.process.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            return self.process.wait(10)
        finally:
            if self.reader is not None:
                self.reader.join(10)
            if self.master is not None:
                os.close(self.master)
                self.master = None


def _read(fd: int, chunks: list[bytes]) -> None:
    while True:
        try:
            ready, _, _ = select.select([fd], [], [], 1.0)
            if not ready:
                continue
            data = os.read(fd, 65536)
        except OSError:
            return
        if not data:
            return
        chunks.append(data)


def start(env: dict[str, str], *, tty: bool) -> Launcher:
    argv = [sys.executable, "-m", "billing_platform.devserver.launcher", "run"]
    base_url = f"http://127.0.0.1:{env['PORT']}"
    if tty:
        master, slave = pty.openpty()
        process = subprocess.Popen(
            argv, env=env, cwd=ROOT, stdin=slave, stdout=slave, stderr=slave,
            start_new_session=True,
        )
        os.close(slave)
        launcher = Launcher(process, master, base_url)
        launcher.reader = threading.Thread(target=_read, args=(master, launcher.chunks),
                                           daemon=True)
    else:
        read_end, write_end = os.pipe()
        process = subprocess.Popen(
            argv, env=env, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=write_end,
            stderr=write_end, start_new_session=True,
        )
        os.close(write_end)
        launcher = Launcher(process, read_end, base_url)
        launcher.reader = threading.Thread(target=_read, args=(read_end, launcher.chunks),
                                           daemon=True)
    launcher.reader.start()
    return launcher


@pytest.fixture(scope="module")
def first_run_env(django_db_setup: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[
    dict[str, str]
]:
    """The environment of a new checkout: no secrets, a database that does not exist yet."""
    name = f"billable_first_run_{secrets.token_hex(4)}"
    test_url = database_url()
    url = urlunsplit(urlsplit(test_url)._replace(path=f"/{name}"))
    env = server_env()
    for variable in ("SECRET_KEY", "API_KEY_HASH_SECRETS", "ENCRYPTION_KEYS", "METRICS_TOKEN",
                     "LOG_FORMAT", "LOG_LEVEL", "PROMETHEUS_MULTIPROC_DIR", "NO_COLOR",
                     "DEBUG", "SECURE_HTTPS", "STATIC_ROOT", "WEB_CONCURRENCY"):
        env.pop(variable, None)
    env.update(
        DATABASE_URL=url,
        PORT=str(free_port()),
        BILLABLE_VAR_DIR=str(tmp_path_factory.mktemp("first-run-var")),
        CACHE_KEY_PREFIX=f"billable-first-run-{secrets.token_hex(4)}",
        WEB_CONCURRENCY="2",
        TERM="xterm-256color",
    )
    try:
        yield env
    finally:
        maintenance = urlunsplit(urlsplit(test_url)._replace(path="/postgres"))
        with psycopg.connect(maintenance, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# Two starts, the first migrating a new database from zero: more than the suite's 300 s default
# may pass on a slow machine.
@pytest.mark.timeout(720)
def test_first_run_on_a_terminal_then_in_a_pipe(first_run_env: dict[str, str]) -> None:
    env = first_run_env
    var = Path(env["BILLABLE_VAR_DIR"])

    # --- first run, on a terminal
    launcher = start(env, tty=True)
    try:
        launcher.wait_for(READY)
        screen = launcher.text()
        raw = launcher.raw()

        # what it found and made, one line each
        assert re.search(r"✓ Secrets\s+generated into .*secrets\.env \(SECRET_KEY", screen)
        assert re.search(r"✓ PostgreSQL\s+PostgreSQL \d+[.\d]* on 127\.0\.0\.1:\d+, database "
                         r"billable_first_run_\w+ — from DATABASE_URL", screen), screen
        assert re.search(r"✓ Redis\s+Redis [\d.]+ on [\w.]+:\d+ — from REDIS_URL", screen)
        assert re.search(r"✓ Migrations\s+\d+ applied to the public schema, \d+ to 1 of 1 "
                         r"tenant schemas behind the code \(", screen), screen
        assert re.search(r"✓ Demo tenant\s+created `demo` with the demo catalog", screen)
        assert re.search(r"✓ Processes\s+web server \(gunicorn, 2 workers\), webhook worker, "
                         r"background worker", screen)
        # progress while migrating: a line rewritten in place
        assert re.search(r"\r\x1b\[K  .*Migrating.*public: \d+ applied · \w+\.\d{4}_", raw)
        # the block: URLs, the demo key and the metrics token, shown this once
        assert f"{READY} {launcher.base_url}" in screen
        assert f"{launcher.base_url}/api/v1/docs" in screen
        key_match = re.search(r"Demo API key\s+(bk_\S+)\s+\(shown this once", screen)
        token_match = re.search(r"Metrics token\s+(\S+)\s+\(shown this once", screen)
        assert key_match and token_match, screen
        key, token = key_match.group(1), token_match.group(1)
        assert (var / "metrics.env").read_text().strip().endswith(f"METRICS_TOKEN={token}")
        # a normal first run warns of nothing, and no JSON reaches the terminal
        assert "WARNING" not in screen and not re.search(r"^  ! ", screen, re.M), screen
        assert '{"time"' not in screen

        # the key works, and the request shows as a line for people
        assert httpx.get(f"{launcher.base_url}/api/v1/keys",
                         headers={"X-API-Key": key}).status_code == 200
        launcher.wait_for("GET /api/v1/keys", timeout=30)
        assert re.search(r"\d\d:\d\d:\d\d  GET /api/v1/keys  200  [\d.]+ ms  demo",
                         launcher.text()), launcher.text()

        # metrics are on, with the token; every process's counts and the tenant's
        assert httpx.get(f"{launcher.base_url}/metrics").status_code == 401
        scraped = httpx.get(f"{launcher.base_url}/metrics",
                            headers={"Authorization": f"Bearer {token}"})
        assert scraped.status_code == 200
        samples = {
            (sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(scraped.text)
            for sample in family.samples
        }
        assert samples[("billable_processes", (("role", "webhooks"),))] == 1
        assert samples[("billable_processes", (("role", "worker"),))] == 1
        assert samples[("billable_processes", (("role", "api"),))] == 2
        assert samples[("billable_tenant_requests_total",
                        (("status_class", "2xx"), ("tenant", "demo")))] >= 1
    finally:
        code = launcher.stop()
    assert code == 0, launcher.text()[-3000:]

    # --- second run, in a pipe (CI, a log file): plain lines, JSON request lines
    launcher = start(env, tty=False)
    try:
        launcher.wait_for(READY)
        text = launcher.raw()
        assert "\x1b[" not in text and "\r" not in text, text
        assert re.search(r"ok Migrations\s+public schema up to date, \d+ tenant schemas up to "
                         r"date", text), text
        assert re.search(r"ok Demo tenant\s+`demo` exists", text)
        assert key not in text and token not in text
        assert re.search(r"Metrics token\s+in .*metrics\.env", text)
        assert httpx.get(f"{launcher.base_url}/api/v1/keys",
                         headers={"X-API-Key": key, "X-Request-ID": "first-run-2"}
                         ).status_code == 200
        launcher.wait_for('"first-run-2"', timeout=30)
        line = next(line for line in launcher.raw().splitlines() if '"first-run-2"' in line)
        entry = json.loads(line)
        assert (entry["logger"], entry["path"], entry["status"], entry["tenant"]) == (
            "billable.access", "/api/v1/keys", 200, "demo")
    finally:
        code = launcher.stop()
    assert code == 0, launcher.raw()[-3000:]
