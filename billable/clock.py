"""The one place the billing engine reads the time, so expiry has one definition of "now".

Tests move the clock with `frozen(...)`; production reads `timezone.now()`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime

from django.utils import timezone

_override: datetime | None = None


def now() -> datetime:
    return _override if _override is not None else timezone.now()


@contextmanager
def frozen(at: datetime) -> Iterator[None]:
    """Make `now()` answer `at` inside the block (tests and property tests)."""
    global _override
    previous, _override = _override, at
    try:
        yield
    finally:
        _override = previous


def set_now(at: datetime | None) -> None:
    """Pin (or with None, release) the clock; for stateful property tests."""
    global _override
    _override = at
