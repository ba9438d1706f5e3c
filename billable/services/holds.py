"""Holds: reserve units now, commit what the work really cost, release the rest.

A hold debits like a consume (action `hold`), so reserved units leave the balance at once.
Commit keeps `amount` spent (a usage is written) and credits the rest back; release credits all
back. Credits return to the batches the units came from, latest-drawn first; a batch that has
expired or been revoked meanwhile is debited again at once, since those units are gone.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from billable import clock, errors, signals
from billable.models import (
    BatchState,
    Customer,
    Direction,
    Hold,
    HoldStatus,
    LedgerEntry,
    QuotaBatch,
    Usage,
)
from billable.selectors import has_usable_access
from billable.services import ledger
from billable.services.quota import (
    entries_signal,
    require_positive_amount,
    spend,
    thresholds_signal,
)
from billable.tenancy import note_sweep_due
from billing_platform.core.db import service_atomic
from billing_platform.core.errors import ValidationFailed

MIN_TTL, MAX_TTL, DEFAULT_TTL = 60, 86_400, 900


def hold_create(
    *,
    customer: Customer,
    feature: str,
    amount: int,
    ttl_seconds: int = DEFAULT_TTL,
    metadata: dict[str, Any] | None = None,
    actor: str = "",
) -> Hold:
    """Reserve `amount` of a feature (402 as consume); with access, reserve nothing."""
    require_positive_amount(amount)
    now = clock.now()
    with service_atomic():
        customer = ledger.lock_customer(customer)
        unmetered = has_usable_access(customer.pk, feature, now)
        hold_id = uuid.uuid4()
        spent = None
        if not unmetered:
            spent = spend(
                customer, feature, amount, now, action_type="hold", action_id=str(hold_id),
                actor=actor, hold_id=hold_id,
            )
        hold = Hold.objects.create(
            id=hold_id,
            customer=customer,
            feature=feature,
            amount=amount,
            unmetered=unmetered,
            credits=sum(entry.amount for entry in spent.entries) if spent is not None else 0,
            expires_at=now + timedelta(seconds=ttl_seconds),
            metadata=metadata or {},
        )
        if spent is not None:
            entries_signal(spent.entries)
        note_sweep_due(hold.expires_at)
        signals.hold_created.send(sender=Hold, hold=hold, customer=customer)
        if spent is not None:  # reserved units leave the balance at once: a threshold may pass
            thresholds_signal(customer, feature, spent.total, spent.total - amount)
    return hold


def _give_back(hold: Hold, amount: int, *, actor: str) -> int:
    """Credit `amount` reserved units back, latest-drawn first, and answer the credits returned.

    A unit drawn from a product that prices the feature (`unit_cost` on its debits) goes back
    whole: its cost in credits to that product's batches, latest-drawn first.
    """
    if amount <= 0 or hold.unmetered:
        return 0
    now = clock.now()
    # Draw groups in draw order: one per batch at cost 1, one per product at a cost.
    groups: dict[Any, tuple[int, dict[Any, int]]] = {}
    for batch_id, units, metadata, product_id in (
        LedgerEntry.objects.filter(hold=hold, direction=Direction.DEBIT, action_type="hold")
        .order_by("id")
        .values_list("batch_id", "amount", "metadata", "batch__product_id")
    ):
        cost = int((metadata or {}).get("unit_cost") or 1)
        key = ("product", product_id, cost) if cost > 1 else ("batch", batch_id)
        _cost, drawn = groups.pop(key, (cost, {}))
        drawn[batch_id] = drawn.get(batch_id, 0) + units
        groups[key] = (cost, drawn)  # re-inserted: the groups stay in order of last draw
    batch_ids = [batch_id for _cost, drawn in groups.values() for batch_id in drawn]
    locked = ledger.lock_batches(QuotaBatch.objects.filter(pk__in=batch_ids))
    batches = {batch.pk: batch for batch in locked}
    credits: list[ledger.Take] = []
    left = amount
    for cost, drawn in reversed(list(groups.values())):
        if left <= 0:
            break
        units = min(sum(drawn.values()) // cost, left)
        left -= units
        owed = units * cost
        for batch_id in reversed(list(drawn)):
            take = min(drawn[batch_id], owed)
            if take > 0:
                credits.append(ledger.Take(batch_id=batch_id, amount=take))
                owed -= take
    ledger.write_entries(
        credits,
        direction=Direction.CREDIT,
        action_type="hold.return",
        action_id=str(hold.pk),
        actor=actor,
        hold=hold,
    )
    for credit in credits:
        batch = batches[credit.batch_id]
        if batch.state == BatchState.REVOKED:
            action = "revoke"
        elif batch.state == BatchState.EXPIRED or (
            batch.expires_at is not None and batch.expires_at <= now
        ):
            action = "expiry"
        else:
            continue
        # Units returned to a batch that is no longer usable are gone at once.
        ledger.write_entries(
            [credit],
            direction=Direction.DEBIT,
            action_type=action,
            action_id=str(hold.pk),
            actor=actor,
            hold=hold,
        )
    return sum(credit.amount for credit in credits)


def _locked(hold: Hold) -> Hold:
    """Lock the hold's customer, then the hold (the fixed order of `billable.services.ledger`)."""
    ledger.lock_customer_row(hold.customer_id)
    return Hold.objects.select_for_update().get(pk=hold.pk)


def hold_commit(*, hold: Hold, amount: int | None = None, actor: str = "") -> Hold:
    """Keep `amount` (default: all) spent and return the rest; repeating answers unchanged."""
    with service_atomic():
        hold = _locked(hold)
        if hold.status == HoldStatus.COMMITTED:
            return hold
        if hold.status != HoldStatus.ACTIVE:
            raise errors.HoldNotActive(f"The hold is {hold.status}.")
        keep = hold.amount if amount is None else amount
        if keep < 0 or keep > hold.amount:
            raise ValidationFailed(
                f"amount is between 0 and the {hold.amount} units held.",
                field="amount",
                msg="out of range",
            )
        returned = _give_back(hold, hold.amount - keep, actor=actor)
        hold.credits -= returned
        if keep > 0:
            usage = Usage.objects.create(
                customer_id=hold.customer_id,
                feature=hold.feature,
                amount=keep,
                credits=hold.credits,
                action_type="hold",
                action_id=str(hold.pk),
                metadata=hold.metadata,
            )
            hold.usage = usage
        hold.committed_amount = keep
        hold.status = HoldStatus.COMMITTED
        hold.save(update_fields=["committed_amount", "status", "usage", "credits"])
        signals.hold_committed.send(sender=Hold, hold=hold, customer=hold.customer)
    return hold


def hold_release(*, hold: Hold, actor: str = "", expired: bool = False) -> Hold:
    """Return every reserved unit; repeating answers unchanged."""
    with service_atomic():
        hold = _locked(hold)
        target = HoldStatus.EXPIRED if expired else HoldStatus.RELEASED
        if hold.status == target:
            return hold
        if hold.status != HoldStatus.ACTIVE:
            raise errors.HoldNotActive(f"The hold is {hold.status}.")
        _release(hold, target, actor=actor)
    return hold


def _release(hold: Hold, status: str, *, actor: str) -> None:
    """Return every reserved unit of a locked, active hold and give it `status`."""
    hold.credits -= _give_back(hold, hold.amount, actor=actor)
    hold.status = status
    hold.committed_amount = 0
    hold.save(update_fields=["status", "committed_amount", "credits"])
    signals.hold_released.send(
        sender=Hold, hold=hold, customer=hold.customer, expired=status == HoldStatus.EXPIRED
    )


def holds_expire_due(*, limit: int = 500) -> int:
    """Release active holds past their expiry (the sweep runs this every minute).

    Each hold is locked and checked again first: a commit or release (or another sweep) may
    have settled it since it was listed, and then it is left as it is and not counted.
    """
    now = clock.now()
    due = list(
        Hold.objects.filter(status=HoldStatus.ACTIVE, expires_at__lte=now)
        .order_by("expires_at")
        .values("pk", "customer_id")[:limit]
    )
    done = 0
    for row in due:
        with service_atomic():
            ledger.lock_customer_row(row["customer_id"])
            hold = Hold.objects.select_for_update().filter(pk=row["pk"]).first()
            if hold is None or hold.status != HoldStatus.ACTIVE:
                continue
            _release(hold, HoldStatus.EXPIRED, actor="")
        done += 1
    return done
