"""Find PostgreSQL and Redis for `make run` and `make test`, or start private ones.

Order, for each service: the URL from the environment (it must answer, or we stop: an explicit
setting is never silently replaced); a server on the standard local port; a private instance on a
free port (always, with USE_PRIVATE_SERVICES=1); otherwise one clear line naming what to install.
A private PostgreSQL runs as an unprivileged user when we are root (initdb refuses root), with
its data, socket and log in a folder that user can reach.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import os
import pwd
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import redis
from psycopg import sql


class ServiceError(SystemExit):
    """A service cannot be found or started; the message is the one line the user sees."""

    def __init__(self, message: str) -> None:
        super().__init__(f"error: {message}")


@dataclass
class Services:
    database_url: str
    redis_url: str | None
    stoppers: list[Callable[[], None]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    # How each was found, for `make run` to say: "DATABASE_URL", "the standard port", "private".
    database_source: str = ""
    redis_source: str = ""

    def stop(self) -> None:
        while self.stoppers:
            stopper = self.stoppers.pop()
            with contextlib.suppress(Exception):
                stopper()


# `make run` on a terminal says what it found in its own words and silences these lines.
QUIET = False


def log(message: str) -> None:
    if not QUIET:
        print(f"[services] {message}", file=sys.stderr, flush=True)


def postgres_version(url: str) -> str:
    """The server's version ("15.20"), or "" when it cannot be read."""
    try:
        with psycopg.connect(url, connect_timeout=3) as conn:
            row = conn.execute("SHOW server_version").fetchone()
    except psycopg.Error:
        return ""
    return str(row[0]).split()[0] if row else ""


def redis_version(url: str) -> str:
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)
        info = client.info("server")
        client.close()
    except Exception:
        return ""
    return str(info.get("redis_version", ""))


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- PostgreSQL


def _pg_connect_error(url: str) -> str | None:
    try:
        with psycopg.connect(url, connect_timeout=3):
            return None
    except psycopg.OperationalError as exc:
        return str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__


def _ensure_database(url: str) -> None:
    """Create the URL's database when the server answers but the database is missing."""
    parts = urlsplit(url)
    dbname = parts.path.lstrip("/") or "postgres"
    maintenance = urlunsplit(parts._replace(path="/postgres"))
    with psycopg.connect(maintenance, connect_timeout=3, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [dbname]).fetchone()
        if not exists:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
            log(f"created database {dbname}")


def _check_postgres(url: str) -> str | None:
    error = _pg_connect_error(url)
    if error and "does not exist" in error:
        try:
            _ensure_database(url)
        except Exception as exc:
            return f"{error} (and creating it failed: {exc})"
        error = _pg_connect_error(url)
    return error


def find_pg_bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(
        glob.glob(f"/usr/lib/postgresql/*/bin/{name}"),
        key=lambda p: int(p.split("/")[4]) if p.split("/")[4].isdigit() else 0,
    )
    return candidates[-1] if candidates else None


def _unprivileged_user() -> str | None:
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    raise ServiceError("running as root and no unprivileged user (postgres) exists for initdb")


def _as_user(user: str | None, argv: list[str]) -> list[str]:
    if user is None:
        return argv
    runuser = shutil.which("runuser")
    if runuser:
        return [runuser, "-u", user, "--", *argv]
    return ["su", "-s", "/bin/sh", user, "-c", " ".join(argv)]


def _traversable_by(path: Path, user: str) -> bool:
    if user == "root":
        return True
    return all(
        parent.stat().st_mode & 0o001 for parent in path.parents if parent != Path("/")
    )


def _refuse_foreign(path: Path, user: str) -> None:
    """A predictable folder under /tmp must be a real folder of ours or the service user's."""
    try:
        info = path.lstat()
    except FileNotFoundError:
        return
    owners = {0, os.getuid(), pwd.getpwnam(user).pw_uid}
    if not stat.S_ISDIR(info.st_mode) or info.st_uid not in owners:
        raise ServiceError(f"{path} exists and is not a folder of this user or {user}; remove it")


def private_dir(name: str, persistent_dir: Path | None) -> tuple[Path, bool]:
    """A folder for a private service, reachable by the user that runs it.

    Returns the folder and whether it is kept after the service stops.
    """
    user = _unprivileged_user()
    if persistent_dir is not None:
        base = persistent_dir
        if user is not None and not _traversable_by(base, user):
            # e.g. a checkout under /root: keep the data in a stable folder under /tmp instead.
            digest = hashlib.sha256(str(persistent_dir).encode()).hexdigest()[:12]
            base = Path(tempfile.gettempdir()) / f"billable-{name}-{digest}"
            _refuse_foreign(base, user)
        base.mkdir(parents=True, exist_ok=True)
        keep = True
    else:
        base = Path(tempfile.mkdtemp(prefix=f"billable-{name}-"))
        keep = False
    if user is not None:
        info = pwd.getpwnam(user)
        os.chown(base, info.pw_uid, info.pw_gid)
    return base, keep


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""


def start_private_postgres(
    persistent_dir: Path | None, *, fast: bool
) -> tuple[str, Callable[[], None]]:
    initdb, pg_ctl = find_pg_bin("initdb"), find_pg_bin("pg_ctl")
    if not initdb or not pg_ctl:
        raise ServiceError(
            "PostgreSQL not found: install it (apt-get install postgresql) or set DATABASE_URL"
        )
    user = _unprivileged_user()
    base, keep = private_dir("postgres", persistent_dir)
    data = base / "data"
    if not (data / "PG_VERSION").exists():
        log(f"initdb {data}")
        result = subprocess.run(
            _as_user(user, [initdb, "-D", str(data), "-U", "postgres", "--auth=trust",
                            "-E", "UTF8", "--no-sync"]),
            capture_output=True, text=True, check=False,
        )
        if result.returncode != 0:
            raise ServiceError(f"initdb failed: {_last_line(result.stderr)}")
    status = subprocess.run(
        _as_user(user, [pg_ctl, "-D", str(data), "status"]),
        capture_output=True, text=True, check=False,
    )
    if status.returncode == 0:
        # A server left running on this data folder by an earlier run that was killed: its port
        # is unknown to us, so stop it and start afresh.
        log(f"stopping a private PostgreSQL left running on {data}")
        subprocess.run(
            _as_user(user, [pg_ctl, "-D", str(data), "-m", "fast", "-w", "stop"]),
            capture_output=True, check=False,
        )
    port = free_port()
    options = f"-p {port} -k {base} -c listen_addresses=127.0.0.1 -c max_connections=200"
    if fast:
        options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
    log_file = base / "postgres.log"
    result = subprocess.run(
        _as_user(user, [pg_ctl, "-D", str(data), "-l", str(log_file),
                        "-o", options, "-w", "-t", "60", "start"]),
        capture_output=True, text=True, check=False,
    )
    if result.returncode != 0:
        detail = _last_line(log_file.read_text()) if log_file.exists() else ""
        if not keep:
            shutil.rmtree(base, ignore_errors=True)
        raise ServiceError(
            f"pg_ctl start failed: {_last_line(result.stderr) or detail} (log: {log_file})"
        )
    log(f"private PostgreSQL on 127.0.0.1:{port} ({data})")

    def stop() -> None:
        subprocess.run(
            _as_user(user, [pg_ctl, "-D", str(data), "-m", "fast", "-w", "stop"]),
            capture_output=True, check=False,
        )
        if not keep:
            shutil.rmtree(base, ignore_errors=True)
        log("private PostgreSQL stopped")

    url = f"postgres://postgres@127.0.0.1:{port}/billable"
    error = _check_postgres(url)
    if error:
        stop()
        raise ServiceError(f"the private PostgreSQL does not answer: {error}")
    return url, stop


def find_postgres(*, force_private: bool, persistent_dir: Path | None, fast: bool,
                  services: Services) -> str:
    explicit = os.environ.get("DATABASE_URL")
    if explicit:
        error = _check_postgres(explicit)
        if error:
            raise ServiceError(f"DATABASE_URL does not answer: {error}")
        services.database_source = "DATABASE_URL"
        return explicit
    if not force_private and port_open("127.0.0.1", 5432):
        url = "postgres://postgres@127.0.0.1:5432/billable"
        error = _check_postgres(url)
        if error is None:
            log("using PostgreSQL on 127.0.0.1:5432")
            services.database_source = "the standard port"
            return url
        log(f"PostgreSQL on 127.0.0.1:5432 refused us ({error}); starting a private one")
        services.notes.append(f"PostgreSQL on 127.0.0.1:5432 refused us ({error})")
    url, stop = start_private_postgres(persistent_dir, fast=fast)
    services.stoppers.append(stop)
    services.database_source = "private"
    return url


# --- Redis


def _redis_error(url: str) -> str | None:
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)
        client.ping()
        client.close()
        return None
    except Exception as exc:
        return f"{exc.__class__.__name__}: {exc}"


def start_private_redis() -> tuple[str, Callable[[], None]] | None:
    binary = shutil.which("redis-server")
    if not binary:
        return None
    port = free_port()
    workdir = Path(tempfile.mkdtemp(prefix="billable-redis-"))
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(workdir), "--logfile", str(workdir / "redis.log")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    deadline = time.monotonic() + 10
    while _redis_error(url):
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise ServiceError(f"redis-server did not start (see {workdir / 'redis.log'})")
        time.sleep(0.05)
    log(f"private Redis on 127.0.0.1:{port}")

    def stop() -> None:
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
        shutil.rmtree(workdir, ignore_errors=True)
        log("private Redis stopped")

    return url, stop


def find_redis(*, force_private: bool, required: bool, services: Services) -> str | None:
    explicit = os.environ.get("REDIS_URL")
    if explicit:
        error = _redis_error(explicit)
        if error:
            raise ServiceError(f"REDIS_URL does not answer: {error}")
        services.redis_source = "REDIS_URL"
        return explicit
    if not force_private and port_open("127.0.0.1", 6379):
        url = "redis://127.0.0.1:6379/0"
        if _redis_error(url) is None:
            log("using Redis on 127.0.0.1:6379")
            services.redis_source = "the standard port"
            return url
    started = start_private_redis()
    if started is not None:
        url, stop = started
        services.stoppers.append(stop)
        services.redis_source = "private"
        return url
    if required:
        raise ServiceError(
            "Redis not found: install it (apt-get install redis-server) or set REDIS_URL"
        )
    return None


def find_services(*, redis_required: bool, persistent_dir: Path | None, fast: bool) -> Services:
    force_private = os.environ.get("USE_PRIVATE_SERVICES", "") in ("1", "true", "yes")
    services = Services(database_url="", redis_url=None)
    try:
        services.database_url = find_postgres(
            force_private=force_private, persistent_dir=persistent_dir, fast=fast,
            services=services,
        )
        services.redis_url = find_redis(
            force_private=force_private, required=redis_required, services=services
        )
    except BaseException:
        services.stop()
        raise
    return services
