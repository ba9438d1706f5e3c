"""Fixtures for webhook tests: private networks allowed (helpers: tests/support/webhooks.py)."""

from __future__ import annotations

from typing import Any

import pytest


@pytest.fixture
def private_ok(settings: Any) -> Any:
    """The receiver listens on loopback: allow private networks (tests flip it back off)."""
    settings.WEBHOOKS_ALLOW_PRIVATE_NETWORKS = True
    settings.WEBHOOK_RETRY_SCHEDULE = [0, 0, 0]
    settings.WEBHOOK_TIMEOUT_SECONDS = 2.0
    return settings
