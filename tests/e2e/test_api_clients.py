"""Clients generated from the OpenAPI document work out of the box against the production server.

A Python client generated with openapi-python-client and TypeScript types generated with
openapi-typescript (called through openapi-fetch, compiled with tsc in strict mode) each run the
same script against a tenant seeded as `make run` seeds the demo tenant: consume, the same
consume again with its Idempotency-Key (a replay), balance, and a consume too large (a 402).
The npm packages are pinned in tests/clients/typescript/package-lock.json and installed by
`npm ci` when node_modules does not match it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from django_tenants.utils import schema_context

from billable.services.catalog import demo_catalog_install
from billing_platform.operations.services import demo_customer_ensure
from tests.support import ROOT
from tests.support.processes import Server
from tests.support.tenants import TenantFixture, fresh_tenant

pytestmark = pytest.mark.e2e

CLIENTS = ROOT / "tests" / "clients"
TYPESCRIPT = CLIENTS / "typescript"
GENERATOR = Path(sys.executable).with_name("openapi-python-client")


@pytest.fixture
def demo(committed: None) -> Iterator[TenantFixture]:
    """A committed tenant with the demo catalog and the demo customer, dropped afterwards."""
    with fresh_tenant("clients") as tenant:
        with schema_context(tenant.tenant.schema_name):
            demo_catalog_install()
        demo_customer_ensure(tenant.tenant)
        yield tenant


@pytest.fixture(scope="module")
def openapi_file(server: Server, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("openapi") / "openapi.json"
    response = httpx.get(server.base_url + "/api/v1/openapi.json", timeout=30)
    assert response.status_code == 200
    path.write_bytes(response.content)
    return path


def _run(argv: list[str], *, cwd: Path, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(
        argv, cwd=cwd, env={**os.environ, **(env or {})}, capture_output=True, text=True,
        timeout=300, check=False,
    )
    assert result.returncode == 0, (argv, result.stdout[-3000:], result.stderr[-3000:])
    return result.stdout


def _npm_installed() -> None:
    """`npm ci` unless node_modules already holds exactly what the lock file pins."""
    if shutil.which("npm") is None:
        pytest.fail("npm is missing: install Node.js 20 and npm (Debian: apt-get install npm)")
    lock = TYPESCRIPT / "package-lock.json"
    installed = TYPESCRIPT / "node_modules" / ".package-lock.json"
    if installed.exists() and _packages(installed) == _packages(lock):
        return
    _run(["npm", "ci", "--no-audit", "--no-fund"], cwd=TYPESCRIPT)


def _packages(lock: Path) -> dict[str, str]:
    packages = json.loads(lock.read_text())["packages"]
    return {name: entry.get("version", "") for name, entry in packages.items() if name}


def _check(seen: dict[str, Any]) -> None:
    """What both scripts must have seen: a consume, its replay, the balance after, a 402."""
    consume, replay = seen["consume"], seen["replay"]
    balance, short = seen["balance"], seen["short"]
    assert consume["status"] == 200 and consume["usage_id"], seen
    assert replay["status"] == 200 and replay["replayed"] == "true", seen
    assert replay["usage_id"] == consume["usage_id"], seen
    assert balance["status"] == 200 and balance["can_use"] is True, seen
    assert balance["remaining"] == consume["remaining"], seen
    assert short["status"] == 402 and short["code"] == "insufficient_quota", seen
    assert short["remaining"] == balance["remaining"], seen


def test_python_client_generated_with_openapi_python_client(
    server: Server, demo: TenantFixture, openapi_file: Path, tmp_path: Path
) -> None:
    # given: the client generated from the server's document
    package = tmp_path / "billable_client"
    _run([str(GENERATOR), "generate", "--path", str(openapi_file), "--output-path",
          str(package), "--meta", "none", "--config",
          str(CLIENTS / "openapi-python-client.yaml")], cwd=tmp_path)

    # when
    out = _run([sys.executable, str(CLIENTS / "python_calls.py")], cwd=tmp_path, env={
        "PYTHONPATH": str(tmp_path), "BILLABLE_URL": server.base_url, "BILLABLE_KEY": demo.key,
    })

    # then
    seen = json.loads(out)
    assert seen["consume"]["type"] == "UsageOut" and seen["short"]["type"] == "QuotaProblem"
    _check(seen)


def test_typescript_types_generated_with_openapi_typescript(
    server: Server, demo: TenantFixture, openapi_file: Path, tmp_path: Path
) -> None:
    # given: the types generated from the server's document with openapi-typescript's defaults,
    # and the calls compiled against them
    _npm_installed()
    for name in ("package.json", "tsconfig.json", "calls.ts"):
        shutil.copy(TYPESCRIPT / name, tmp_path / name)
    (tmp_path / "node_modules").symlink_to(TYPESCRIPT / "node_modules")
    bin_dir = TYPESCRIPT / "node_modules" / ".bin"
    _run([str(bin_dir / "openapi-typescript"), str(openapi_file), "-o",
          "generated/schema.d.ts"], cwd=tmp_path)
    _run([str(bin_dir / "tsc"), "-p", "."], cwd=tmp_path)

    # when
    out = _run(["node", "dist/calls.js"], cwd=tmp_path, env={
        "BILLABLE_URL": server.base_url, "BILLABLE_KEY": demo.key,
    })

    # then
    _check(json.loads(out))


# --- The curl walk-through of docs/billing.md

BILLING_DOC = ROOT / "docs" / "billing.md"
WALKTHROUGH = ROOT / "docs" / "walkthrough.sh"
SCRIPT_MARK = "# --- docs/billing.md, \"Worked example\", from here on\n"


def _worked_example() -> str:
    text = BILLING_DOC.read_text()
    start = text.index("## Worked example")
    end = text.find("\n## ", start + 1)
    return text[start:] if end == -1 else text[start:end]


def test_the_walkthrough_is_the_documented_one() -> None:
    # The doc's ```bash blocks, but for the line that sets KEY, are the script after its header.
    blocks = re.findall(r"```bash\n(.*?)```", _worked_example(), flags=re.DOTALL)
    documented = [
        line for block in blocks for line in block.splitlines()
        if not line.startswith("export KEY=")
    ]
    script = WALKTHROUGH.read_text().split(SCRIPT_MARK, 1)[1]
    assert documented == script.splitlines()


def test_the_walkthrough_runs_and_prints_the_documented_status_lines(
    server: Server, demo: TenantFixture
) -> None:
    # given: a fresh tenant seeded as `make run` seeds the demo tenant
    env = {"KEY": demo.key, "B": server.base_url + "/api/v1", "PATH": os.environ["PATH"]}

    # when
    result = subprocess.run(
        ["bash", str(WALKTHROUGH)], env=env, capture_output=True, text=True, timeout=120,
        check=False,
    )

    # then: it ran to the end, printing the status lines the doc shows, in the doc's order
    assert result.returncode == 0, (result.stdout[-3000:], result.stderr[-3000:])
    printed = re.findall(r"^HTTP (\d{3})$", result.stdout, flags=re.MULTILINE)
    shown = re.findall(r"^HTTP (\d{3})$", _worked_example(), flags=re.MULTILINE)
    assert printed == shown, result.stdout
    assert re.search(r"^Idempotent-Replayed: true\s*$", result.stdout,
                     flags=re.MULTILINE | re.IGNORECASE), result.stdout
