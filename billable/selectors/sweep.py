"""When a tenant schema next has upkeep to do (`billable.services.sweep` does it)."""

from __future__ import annotations

from datetime import datetime, timedelta

from billable import clock
from billable.models import (
    BatchState,
    Hold,
    HoldStatus,
    IdempotencyRecord,
    QuotaBatch,
    Subscription,
)
from billable.tenancy import current_settings


def sweep_next_due() -> datetime:
    """When this schema next has sweep work: the earliest expiry or purge, at most a day out."""
    now = clock.now()
    candidates = [now + timedelta(days=1)]
    batch = (
        QuotaBatch.objects.filter(state__in=[BatchState.ACTIVE, BatchState.EXHAUSTED])
        .exclude(expires_at__isnull=True)
        .order_by("expires_at")
        .values_list("expires_at", flat=True)
        .first()
    )
    hold = (
        Hold.objects.filter(status=HoldStatus.ACTIVE)
        .order_by("expires_at")
        .values_list("expires_at", flat=True)
        .first()
    )
    oldest = IdempotencyRecord.objects.order_by("created_at").values_list("created_at", flat=True)
    record = oldest.first()
    days = int(current_settings().get("idempotency_retention_days") or 7)
    subscription = (
        Subscription.objects.filter(next_due_at__isnull=False)
        .order_by("next_due_at")
        .values_list("next_due_at", flat=True)
        .first()
    )
    candidates += [at for at in (batch, hold, subscription) if at is not None]
    if record is not None:
        candidates.append(record + timedelta(days=days))
    return min(candidates)
