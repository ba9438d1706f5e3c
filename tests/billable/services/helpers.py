"""Helpers for the service tests: signal capture, grants by SKU, the ledger invariant."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from django.db.models import Q, Sum
from django.dispatch import Signal

from billable.models import Customer, Direction, LedgerEntry, QuotaBatch
from billable.services.grants import GrantResult, offer_for_grant, offer_grant


@contextmanager
def captured(signal: Signal) -> Iterator[list[dict[str, Any]]]:
    """Record the keyword arguments of every send of `signal` inside the block."""
    calls: list[dict[str, Any]] = []

    def receiver(sender: Any, **kwargs: Any) -> None:
        kwargs.pop("signal", None)
        calls.append(kwargs)

    signal.connect(receiver, weak=False)
    try:
        yield calls
    finally:
        signal.disconnect(receiver)


@contextmanager
def connected(signal: Signal, receiver: Callable[..., Any]) -> Iterator[None]:
    signal.connect(receiver, weak=False)
    try:
        yield
    finally:
        signal.disconnect(receiver)


def grant(
    customer: Customer, sku: str, *, kind: str = "manual", expires_at: datetime | None = None
) -> GrantResult:
    return offer_grant(
        customer=customer, offer=offer_for_grant(sku), kind=kind, expires_at=expires_at
    )


def ledger_sum(batch: QuotaBatch) -> int:
    totals = LedgerEntry.objects.filter(batch=batch).aggregate(
        credits=Sum("amount", filter=Q(direction=Direction.CREDIT)),
        debits=Sum("amount", filter=Q(direction=Direction.DEBIT)),
    )
    return int(totals["credits"] or 0) - int(totals["debits"] or 0)


def assert_ledger_invariant(customer: Customer | None = None) -> None:
    """Every batch: remaining == credits - debits, and never negative."""
    batches = QuotaBatch.objects.all()
    if customer is not None:
        batches = batches.filter(customer=customer)
    for batch in batches:
        assert batch.remaining >= 0, batch.pk
        assert batch.remaining == ledger_sum(batch), (batch.pk, batch.remaining)


def remaining_of(batch: QuotaBatch) -> int:
    return QuotaBatch.objects.values_list("remaining", flat=True).get(pk=batch.pk)
