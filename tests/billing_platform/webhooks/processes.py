"""Real `run_webhook_worker` processes and fresh committed tenants, for tests and the benchmark."""

from __future__ import annotations

import secrets
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from django.db import connection
from django_tenants.utils import schema_context

from billable.services.catalog import ItemSpec, offer_create, product_create
from tenants.models import ApiKey, Tenant
from tenants.services import api_key_revoke, tenant_onboard
from tests.e2e.server import ROOT, server_env


@dataclass
class WorkerProcess:
    process: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def terminate(self, timeout: float = 20.0) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout)


@contextmanager
def webhook_worker(
    *, lease_seconds: int = 2, threads: int = 8, poll: float = 0.2, schedule: str = "0,0,0"
) -> Iterator[WorkerProcess]:
    """`manage.py run_webhook_worker` against the test database; stopped (SIGTERM) after."""
    env = server_env()
    env.update(
        WEBHOOKS_ALLOW_PRIVATE_NETWORKS="true",
        WEBHOOK_LEASE_SECONDS=str(lease_seconds),
        WEBHOOK_RETRY_SCHEDULE=schedule,
        WEBHOOK_TIMEOUT_SECONDS="10",
    )
    log_file = tempfile.NamedTemporaryFile(  # noqa: SIM115 - closed in the finally below
        prefix="billable-webhook-worker-", suffix=".log", delete=False
    )
    argv = [sys.executable, str(ROOT / "manage.py"), "run_webhook_worker",
            "--poll", str(poll), "--threads", str(threads)]
    process = subprocess.Popen(
        argv, env=env, cwd=ROOT, stdout=log_file, stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    worker = WorkerProcess(process, Path(log_file.name))
    try:
        deadline = time.monotonic() + 30
        while "webhook worker started" not in worker.log():
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"the worker did not start:\n{worker.log()[-3000:]}")
            time.sleep(0.05)
        time.sleep(0.2)  # LISTEN is set up right after the start line
        yield worker
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)
        log_file.close()
        Path(log_file.name).unlink(missing_ok=True)


@dataclass
class FreshTenant:
    tenant: Tenant
    key: str


@contextmanager
def fresh_tenant(prefix: str = "wh") -> Iterator[FreshTenant]:
    """A committed tenant with a small catalog; dropped with its webhook rows afterwards."""
    if not str(connection.settings_dict["NAME"]).startswith("test_"):
        raise AssertionError("the test database is not set up: fresh_tenant commits")
    slug = f"{prefix}-{secrets.token_hex(4)}"
    tenant, _key_row, raw = tenant_onboard(name=slug, slug=slug)
    try:
        with schema_context(tenant.schema_name):
            product_create(key="reports", name="Reports", product_type="quantity",
                           features=["report_generation"])
            offer_create(sku="reports_1000", name="1000 reports", price=Decimal("9.00"),
                         currency="USD", items=[ItemSpec("REPORTS", 1000)])
        yield FreshTenant(tenant, raw)
    finally:
        connection.set_schema_to_public()
        for key in ApiKey.objects.filter(tenant=tenant):
            api_key_revoke(key=key)
        Tenant.objects.get(pk=tenant.pk).delete(force_drop=True)


def wait_until(check: object, timeout: float = 15.0, message: str = "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(check) and check():
            return
        time.sleep(0.05)
    raise AssertionError(message or "condition not met in time")


__all__ = ["FreshTenant", "WorkerProcess", "fresh_tenant", "wait_until", "webhook_worker"]
