"""Opt-in tests against a real n8n (`make e2e-n8n`).

Skipped unless BILLABLE_N8N=1 and n8n is installed.

`make e2e-n8n` installs the pinned n8n under var/n8n and sets BILLABLE_N8N=1, so `make test` never
pays for it.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.e2e_n8n.n8n import N8N_BIN, N8N_VERSION

HERE = Path(__file__).resolve().parent


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "n8n: drives a real n8n (make e2e-n8n)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    reason = ""
    if os.environ.get("BILLABLE_N8N") != "1":
        reason = "opt-in: run with `make e2e-n8n` (BILLABLE_N8N=1)"
    elif not N8N_BIN.exists():
        reason = f"n8n {N8N_VERSION} is not installed under var/n8n (`make e2e-n8n` installs it)"
    if not reason:
        return
    skip = pytest.mark.skip(reason=reason)
    for item in items:
        if HERE in Path(str(item.path)).resolve().parents:
            item.add_marker(skip)
