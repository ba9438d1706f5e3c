"""A run scope: values that one unit of batch work (a sweep over a tenant) reads alike, read
once for the whole run instead of once per item.

Outside a scope `scoped` computes every time, so code that uses it behaves the same whether or
not a caller opened one. Only what cannot change in a way that matters during the run belongs
here (a plan version's entitlements, which are never changed once written; a tenant's webhook
subscriptions, where an endpoint added during the run may miss that run's events, as it misses
every event before it was added).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, TypeVar

T = TypeVar("T")

_values: ContextVar[dict[Any, Any] | None] = ContextVar("run_scope", default=None)


@contextmanager
def run_scope() -> Iterator[None]:
    """Open a scope (an inner one is the outer one's)."""
    if _values.get() is not None:
        yield
        return
    token = _values.set({})
    try:
        yield
    finally:
        _values.reset(token)


def scoped(key: Any, compute: Callable[[], T]) -> T:
    """`compute()`, once per scope for `key`."""
    values = _values.get()
    if values is None:
        return compute()
    if key not in values:
        values[key] = compute()
    found: T = values[key]
    return found
