"""The dependency rule (docs/architecture.md#layers), checked with import-linter's contracts.

The contracts live in pyproject.toml (`[tool.importlinter]`). The second test breaks the rule in a
copy of the code and checks that the contracts notice, so the first cannot pass vacuously.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("billing_platform", "billable", "tenants")
LINT_IMPORTS = str(Path(sys.executable).with_name("lint-imports"))


def _lint_imports(root: Path, *contracts: str) -> subprocess.CompletedProcess[str]:
    selected = [arg for contract in contracts for arg in ("--contract", contract)]
    return subprocess.run(
        [LINT_IMPORTS, "--no-cache", "--no-logo", *selected],
        cwd=root,
        # The packages are analysed where `root` has them, not where this process imports them.
        env={**os.environ, "PYTHONPATH": str(root)},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_every_contract_is_kept() -> None:
    result = _lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.fixture(scope="module")
def copy_of_code(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("layers")
    for package in PACKAGES:
        shutil.copytree(
            ROOT / package, root / package, ignore=shutil.ignore_patterns("__pycache__")
        )
    shutil.copy(ROOT / "pyproject.toml", root / "pyproject.toml")
    return root


def _add_import(root: Path, module: str, statement: str) -> Path:
    path = root / (module.replace(".", "/") + ".py")
    original = path.read_text()
    path.write_text(original + f"\n{statement}\n")
    return path


@pytest.mark.parametrize(
    ("contract", "module", "statement", "reported"),
    [
        # The foundation importing the engine.
        ("layers", "billing_platform.core.db", "import billable.signals",
         "billing_platform.core.db -> billable.signals"),
        # The engine importing the request pipeline.
        ("layers", "billable.services.quota", "from billing_platform.http import pipeline",
         "billable.services.quota -> billing_platform.http.pipeline"),
        # The tenant registry importing the engine.
        ("layers", "tenants.keys", "import billable.models",
         "tenants.keys -> billable.models"),
        # A model importing a service of its own app.
        ("billable-rooms", "billable.models", "import billable.services.quota",
         "billable.models -> billable.services.quota"),
        # A response schema importing a service.
        ("billable-rooms", "billable.schemas", "import billable.services.quota",
         "billable.schemas -> billable.services.quota"),
        # Key resolution importing the Ninja auth classes built on it.
        ("tenants-rooms", "tenants.resolution", "import tenants.auth",
         "tenants.resolution -> tenants.auth"),
        # The webhook event registry importing the fan-out that reads it.
        ("webhooks-rooms", "billing_platform.webhooks.events",
         "import billing_platform.webhooks.fanout",
         "billing_platform.webhooks.events -> billing_platform.webhooks.fanout"),
        # Shipped code importing the development launcher.
        ("devserver-aside", "billing_platform.http.health",
         "import billing_platform.devserver.services",
         "billing_platform.http.health -> billing_platform.devserver.services"),
        # Settings importing the code they configure.
        ("settings-leaf", "billing_platform.settings", "import billable.clock",
         "billing_platform.settings -> billable.clock"),
        # Two modules importing each other (the presenters import the currencies).
        ("no-cycles", "billable.currencies", "import billable.presenters",
         "No cycles are allowed in billable."),
    ],
)
def test_a_wrong_way_import_breaks_a_contract(
    copy_of_code: Path, contract: str, module: str, statement: str, reported: str
) -> None:
    path = _add_import(copy_of_code, module, statement)
    original = path.read_text().removesuffix(f"\n{statement}\n")
    try:
        result = _lint_imports(copy_of_code, contract)
    finally:
        path.write_text(original)
    assert result.returncode != 0, result.stdout
    assert "BROKEN" in result.stdout
    assert reported in result.stdout, result.stdout


def test_a_module_outside_every_room_breaks_its_apps_contract(copy_of_code: Path) -> None:
    # Every module of an app must be placed in one of its rooms (the contracts are exhaustive).
    new = copy_of_code / "billable" / "helpers.py"
    new.write_text('"""A module nobody placed."""\n')
    try:
        result = _lint_imports(copy_of_code, "billable-rooms")
    finally:
        new.unlink()
    assert result.returncode != 0, result.stdout
    assert "billable.helpers" in result.stdout + result.stderr
