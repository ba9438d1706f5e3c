"""Capture the Django signals a service sends, or connect a receiver for one block."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

from django.dispatch import Signal

from billable import signals


@contextmanager
def connected(signal: Signal, receiver: Callable[..., Any]) -> Iterator[None]:
    """Connect `receiver` (strongly) to `signal` inside the block."""
    signal.connect(receiver, weak=False)
    try:
        yield
    finally:
        signal.disconnect(receiver)


@contextmanager
def captured(signal: Signal) -> Iterator[list[dict[str, Any]]]:
    """Record the keyword arguments of every send of `signal` inside the block."""
    calls: list[dict[str, Any]] = []

    def receiver(sender: Any, **kwargs: Any) -> None:
        kwargs.pop("signal", None)
        calls.append(kwargs)

    with connected(signal, receiver):
        yield calls


@contextmanager
def captured_billing_signals() -> Iterator[dict[str, list[dict[str, Any]]]]:
    """Record every signal of billable.signals inside the block, by the signal's name."""
    named = {name: value for name, value in vars(signals).items() if isinstance(value, Signal)}
    with ExitStack() as stack:
        yield {name: stack.enter_context(captured(signal)) for name, signal in named.items()}
