"""The commands of deploy/compose.yaml and deploy/systemd/*.service, run here as production runs
them: each does its job against the test database and stops cleanly on SIGTERM.

The commands are read from the files themselves (tests/support/deploy.py), so a change there is
what runs here.
"""

from __future__ import annotations

import secrets
import signal
import socket
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from django.db import connection

from tenants.models import Tenant, TenantStatus
from tests.support import ROOT
from tests.support.deploy import (
    ROLES,
    SOURCES,
    VM_APP_DIR,
    compose_service,
    localize,
    production_argvs,
    unit,
    unit_environment,
)
from tests.support.processes import (
    START_TIMEOUT,
    Process,
    free_port,
    healthy,
    server_env,
    started,
    wait_for,
)

pytestmark = pytest.mark.e2e

# gunicorn's graceful_timeout is 10 s; idle processes must stop well before it.
STOP_SECONDS = 8.0


def production_env(source: str, role: str, **overrides: str) -> dict[str, str]:
    """server_env() (production settings on the test database) plus what the file sets.

    A variable the compose service sets must be given here, since its value (a container host
    name, 0.0.0.0) means nothing on this machine; the unit's `Environment=` values apply unless
    overridden.
    """
    env = server_env()
    if source == "compose":
        unknown = set(compose_service(ROLES[role]["compose"]).get("environment", {})) - set(
            overrides
        )
        assert not unknown, f"compose sets {sorted(unknown)}: give this test a local value"
    else:
        env.update(unit_environment(ROLES[role]["systemd"]))
    env.update(overrides)
    return env


def service_overrides() -> dict[str, str]:
    env = server_env()
    return {"DATABASE_URL": env["DATABASE_URL"], "REDIS_URL": env["REDIS_URL"]}


def working_directory(source: str, role: str) -> Path:
    if source == "systemd":
        assert unit(ROLES[role]["systemd"])["Service"]["WorkingDirectory"] == VM_APP_DIR
    return ROOT  # the image's /app and the VM's /opt/billable/app are copies of the checkout


def stop(process: Process) -> float:
    """SIGTERM, as `docker compose stop` and `systemctl stop` send; returns seconds to exit."""
    started_at = time.monotonic()
    process.popen.send_signal(signal.SIGTERM)
    try:
        process.popen.wait(STOP_SECONDS)
    except subprocess.TimeoutExpired:
        pytest.fail(f"still running {STOP_SECONDS:.0f} s after SIGTERM:\n{process.log()[-3000:]}")
    return time.monotonic() - started_at


def run_to_completion(argv: list[str], source: str, role: str, env: dict[str, str]) -> None:
    result = subprocess.run(
        localize(argv, source), env=env, cwd=working_directory(source, role),
        capture_output=True, text=True, timeout=300, check=False,
    )
    assert result.returncode == 0, (argv, result.stdout[-2000:], result.stderr[-3000:])


def test_the_module_runs_on_the_test_database(db: None) -> None:
    """Makes pytest-django create the test database when this module runs alone.

    It sets up databases only for tests that use `db`; the commands below must never reach the
    development database.
    """
    assert str(connection.settings_dict["NAME"]).startswith("test_")


@pytest.mark.parametrize("source", SOURCES)
def test_migrate_commands_migrate_a_new_schema(
    source: str, committed: None, tmp_path: Path
) -> None:
    # given: a tenant whose schema exists but was never migrated
    token = secrets.token_hex(4)
    tenant = Tenant.objects.create(
        slug=f"deploy-{token}", name="Deploy", schema_name=f"t_deploy_{token}",
        status=TenantStatus.SUSPENDED,
    )
    try:
        with connection.cursor() as cursor:
            cursor.execute(f'CREATE SCHEMA "{tenant.schema_name}"')
        static_root = tmp_path / "static"
        env = production_env(source, "migrate", STATIC_ROOT=str(static_root), **service_overrides())

        # when: the migrate role's commands run, in order
        for argv in production_argvs(source, "migrate"):
            run_to_completion(argv, source, "migrate", env)

        # then: the schema has the billing tables (and compose's job collected the static files)
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM information_schema.tables"
                " WHERE table_schema = %s AND table_name = 'billable_ledgerentry'",
                [tenant.schema_name],
            )
            assert cursor.fetchone() == (1,)
        collected = (static_root / "admin" / "css" / "base.css.gz").is_file()
        assert collected == (source == "compose")
    finally:
        Tenant.objects.get(pk=tenant.pk).delete(force_drop=True)


def collect_static(source: str, static_root: Path) -> None:
    """What fills STATIC_ROOT before the API serves: the unit's ExecStartPre=, or compose's
    migrate job (its volume is the API's STATIC_ROOT)."""
    if source == "compose":
        before = [a for a in production_argvs(source, "migrate") if "collectstatic" in a]
        env = production_env(source, "migrate", **service_overrides())
    else:
        *before, _server = production_argvs(source, "web")
        env = production_env(source, "web", **service_overrides())
    assert before, "nothing collects the static files the API serves"
    env["STATIC_ROOT"] = str(static_root)
    for argv in before:
        run_to_completion(argv, source, "web", env)


@pytest.mark.parametrize("source", SOURCES)
def test_web_serves_health_and_stops_on_sigterm(source: str, db: None, tmp_path: Path) -> None:
    static_root = tmp_path / "static"
    collect_static(source, static_root)
    argv = production_argvs(source, "web")[-1]
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    notify_path = tmp_path / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as notify:
        notify.bind(str(notify_path))
        notify.settimeout(START_TIMEOUT)
        env = production_env(
            source, "web", BIND=f"127.0.0.1:{port}", WEB_CONCURRENCY="2",
            NOTIFY_SOCKET=str(notify_path), STATIC_ROOT=str(static_root), **service_overrides(),
        )
        with started(localize(argv, source), env, working_directory(source, "web")) as process:
            wait_for(process, "/healthz answer from 2 workers", lambda: (
                healthy(base_url, "/healthz") and process.log().count("Booting worker") >= 2
            ))

            readyz = httpx.get(base_url + "/readyz", timeout=5.0)
            assert readyz.status_code == 200, readyz.text
            assert readyz.json()["status"] == "ready"
            # The admin's files are served from what was collected (WhiteNoise, no finders).
            css = httpx.get(base_url + "/static/admin/css/base.css", timeout=5.0)
            assert css.status_code == 200, css.status_code
            # systemd's Type=notify: gunicorn reports READY=1 on NOTIFY_SOCKET.
            assert b"READY=1" in notify.recv(4096)

            elapsed = stop(process)

    assert process.popen.returncode == 0, process.log()[-3000:]
    assert elapsed < STOP_SECONDS
    assert not healthy(base_url, "/healthz")


@pytest.mark.parametrize("source", SOURCES)
def test_webhook_worker_starts_and_stops_on_sigterm(source: str, db: None) -> None:
    (argv,) = production_argvs(source, "webhooks")
    env = production_env(source, "webhooks", **service_overrides())

    with started(localize(argv, source), env, working_directory(source, "webhooks")) as process:
        wait_for(process, "start", lambda: "webhook worker started" in process.log())
        elapsed = stop(process)

    assert process.popen.returncode == 0, process.log()[-3000:]
    assert "webhook worker stopped" in process.log()
    assert elapsed < STOP_SECONDS


@pytest.mark.parametrize("source", SOURCES)
def test_background_worker_refills_spares_sweeps_and_stops_on_sigterm(
    source: str, committed: None
) -> None:
    # given: one spare schema fewer than the worker is told to keep
    spares_before = set(
        Tenant.objects.filter(status=TenantStatus.SPARE).values_list("pk", flat=True)
    )
    (argv,) = production_argvs(source, "worker")
    env = production_env(
        source, "worker", TENANT_SPARE_SCHEMAS=str(len(spares_before) + 1), **service_overrides()
    )

    def spares() -> set[int]:
        return set(Tenant.objects.filter(status=TenantStatus.SPARE).values_list("pk", flat=True))

    try:
        with started(localize(argv, source), env, working_directory(source, "worker")) as process:
            # when: it runs its first pass
            wait_for(process, "sweep and refill", lambda: (
                "sweep:" in process.log() and len(spares()) == len(spares_before) + 1
            ))
            elapsed = stop(process)

        # then: it swept, built the missing spare, and stopped cleanly
        assert process.popen.returncode == 0, process.log()[-3000:]
        assert "built 1 spare schemas" in process.log()
        assert elapsed < STOP_SECONDS
    finally:
        for tenant in Tenant.objects.filter(pk__in=spares() - spares_before):
            tenant.delete(force_drop=True)
