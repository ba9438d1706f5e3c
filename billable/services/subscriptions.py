"""Subscriptions to plan versions: their periods, the rights they grant, and their allowances.

A subscription starts in a trial (when its version has `trial_days` and one is asked for) or in
its first billing period. Its rights are batches, so balance and consume need nothing new:

- **access** entitlements: one period (or unlimited) batch per billing period, valid from the
  period's start to its end;
- **allowance** entitlements: one quantity batch per reset period, anchored at the
  subscription's start (`anchored_at` + k reset periods, calendar arithmetic from the anchor, so
  Jan 31 + 1 month is Feb 28/29 and the next boundary is Mar 31 again). Each period's batch is
  written once (`SubscriptionGrant`, unique per subscription, entitlement and period index)
  up to `LOOKAHEAD` before the period starts, valid from its start, expiring at its end. A
  consume is charged to the period its time falls in, so a consume at the boundary instant can
  use only the new period's units. Purchased and bonus batches are separate and never touched.

Rights are granted only up to `covered_until`: the end of the last period paid for, free, or
trialled. A free plan's next billing period is granted `LOOKAHEAD` before it begins (access
batches valid from the boundary), so nothing lapses at the boundary instant; a cancellation at
period end revokes what was granted beyond it. `subscriptions_advance_due` (the sweep, before it
expires batches) moves each subscription on: it writes the allowance periods that are due,
carries each ended period's unused units into the next (at most the entitlement's
`rollover_cap`: a debit of the old batch and a new batch in the next period), and at the end of
a billing period renews a free plan, ends a subscription cancelled at period end, and turns an
unpaid one `past_due`, then `expired` once the tenant's `subscription_grace_days` have passed.
Every step is written once however many sweeps run: the subscription row is locked (skipping
rows another sweep holds), and each granted period is a unique `SubscriptionGrant` row.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import Q, Sum

from billable import clock, errors, signals
from billable.models import (
    LIVE_SUBSCRIPTION_STATUSES,
    BatchState,
    Customer,
    Direction,
    EntitlementType,
    LedgerEntry,
    Plan,
    PlanEntitlement,
    PlanVersion,
    QuotaBatch,
    Subscription,
    SubscriptionGrant,
    SubscriptionStatus,
)
from billable.periods import interval_period, period_end
from billable.services import ledger
from billable.services.ledger import Take
from billable.tenancy import current_settings, note_sweep_due
from billing_platform.core.db import service_atomic

LOOKAHEAD = timedelta(hours=1)
ADVANCE_CHUNK = 200
ACTOR = "system:subscriptions"

logger = logging.getLogger("billable.subscriptions")


def _after(start: datetime, unit: str, count: int, times: int = 1) -> datetime:
    step_unit, value = interval_period(unit, count)
    end = period_end(start, step_unit, value, times)
    assert end is not None  # plan intervals are never `forever`
    return end


def _boundary(sub: Subscription, entitlement: PlanEntitlement, index: int) -> datetime:
    """The start of allowance period `index` (0 is the subscription's start)."""
    if index == 0:
        return sub.anchored_at
    return _after(sub.anchored_at, entitlement.reset_unit, entitlement.reset_count or 1, index)


def _allowances(version: PlanVersion) -> list[PlanEntitlement]:
    return [
        e for e in version.entitlements.select_related("product").all()
        if e.entitlement_type == EntitlementType.ALLOWANCE
    ]


def _grant(
    sub: Subscription,
    entitlement: PlanEntitlement,
    index: int,
    start: datetime,
    end: datetime,
    *,
    units: int,
    action_type: str,
) -> None:
    """Period `index` of one entitlement: its batch (valid from `start`, expiring at `end`)
    and the row that says it was written."""
    assert entitlement.product is not None
    batch = ledger.batch_create(
        customer_id=sub.customer_id,
        product_id=entitlement.product_id,
        product_type=entitlement.product.product_type,
        units=units,
        valid_from=start,
        expires_at=end,
        source="plan",
        actor=ACTOR,
        action_type=action_type,
        action_id=f"{sub.pk}:{entitlement.pk}:{index}",
    )
    SubscriptionGrant.objects.create(
        subscription=sub, entitlement=entitlement, period_index=index,
        period_start=start, period_end=end, batch=batch,
    )


def _write_access(sub: Subscription, start: datetime, end: datetime, number: int) -> None:
    """The access batches of billing period `number` (0 is a trial)."""
    for entitlement in sub.version.entitlements.select_related("product").all():
        if entitlement.entitlement_type != EntitlementType.ACCESS:
            continue
        _grant(sub, entitlement, number, start, end, units=1, action_type="plan.access")


def _pre_renew(sub: Subscription, now: datetime) -> None:
    """Grant a free plan's next billing period `LOOKAHEAD` ahead of its start, so that its
    rights are there at the boundary instant (the period itself begins at the boundary)."""
    if (
        sub.status in (SubscriptionStatus.TRIALING, SubscriptionStatus.ACTIVE)
        and sub.version.price == 0
        and not sub.cancel_at_period_end
        and sub.covered_until == sub.current_period_end
        and sub.covered_until - LOOKAHEAD <= now
    ):
        number = sub.period_number + 1
        end = _after(sub.billing_anchor, sub.version.interval_unit, sub.version.interval_count,
                     number)
        _write_access(sub, sub.covered_until, end, number)
        sub.covered_until = end


def _write_allowances(sub: Subscription, now: datetime) -> None:
    """Write every allowance period that starts before both `covered_until` and the look-ahead."""
    horizon = now + LOOKAHEAD
    for entitlement in _allowances(sub.version):
        last = (
            SubscriptionGrant.objects.filter(subscription=sub, entitlement=entitlement)
            .order_by("-period_index")
            .values_list("period_index", flat=True)
            .first()
        )
        index = 0 if last is None else last + 1
        start = _boundary(sub, entitlement, index)
        while start <= horizon and start < sub.covered_until:
            end = _boundary(sub, entitlement, index + 1)
            assert entitlement.amount is not None
            _grant(sub, entitlement, index, start, end, units=entitlement.amount,
                   action_type="plan.allowance")
            if index > 0:
                signals.allowance_reset.send(
                    sender=Subscription, subscription=sub, product=entitlement.product,
                    period_start=start, period_end=end, amount=entitlement.amount,
                )
            index, start = index + 1, end


def _unused(batch: QuotaBatch) -> int:
    """What a batch held when its period ended: its `remaining`, or, if the sweep has already
    expired it, what the expiry debited."""
    if batch.state in (BatchState.ACTIVE, BatchState.EXHAUSTED):
        return batch.remaining
    expired = LedgerEntry.objects.filter(
        batch=batch, direction=Direction.DEBIT, action_type="expiry"
    ).aggregate(total=Sum("amount"))["total"]
    return int(expired or 0)


def _roll_over(sub: Subscription, now: datetime) -> None:
    """Carry each ended allowance period's unused units into the next period, at most the
    entitlement's `rollover_cap` (units carried in earlier count, so the cap holds)."""
    ended = list(
        SubscriptionGrant.objects.select_for_update(of=("self",))
        .filter(subscription=sub, rolled_over=False, period_end__lte=now,
                entitlement__entitlement_type=EntitlementType.ALLOWANCE,
                entitlement__rollover_cap__gt=0)
        .select_related("entitlement", "entitlement__product")
        .order_by("period_index")
    )
    for period in ended:
        entitlement = period.entitlement
        held = [QuotaBatch.objects.select_for_update().get(pk=period.batch_id)]
        carried_in = (
            SubscriptionGrant.objects.filter(
                subscription=sub, entitlement=entitlement, period_index=period.period_index - 1
            )
            .values_list("rollover_batch_id", flat=True)
            .first()
        )
        if carried_in is not None:
            held.insert(0, QuotaBatch.objects.select_for_update().get(pk=carried_in))
        following = SubscriptionGrant.objects.filter(
            subscription=sub, entitlement=entitlement, period_index=period.period_index + 1
        ).first()
        if following is None and sub.status in LIVE_SUBSCRIPTION_STATUSES:
            continue  # the next period is not granted yet (a renewal comes first): wait for it
        amount = min(sum(_unused(batch) for batch in held), entitlement.rollover_cap or 0)
        period.rolled_over = True
        if following is not None and amount > 0:
            _take_from(held, amount, sub)
            assert entitlement.product is not None
            period.rollover_batch = ledger.batch_create(
                customer_id=sub.customer_id,
                product_id=entitlement.product_id,
                product_type=entitlement.product.product_type,
                units=amount,
                valid_from=following.period_start,
                expires_at=following.period_end,
                source="plan",
                actor=ACTOR,
                action_type="plan.rollover",
                action_id=f"{sub.pk}:{entitlement.pk}:{period.period_index}",
            )
        period.save(update_fields=["rolled_over", "rollover_batch"])


def _take_from(held: list[QuotaBatch], amount: int, sub: Subscription) -> None:
    """Debit `amount` carried units from the ended batches that hold them. A batch the sweep
    expired already gave its units up in its expiry debit: nothing is taken from it twice."""
    for batch in held:
        if amount <= 0:
            return
        if batch.state not in (BatchState.ACTIVE, BatchState.EXHAUSTED):
            amount -= min(amount, _unused(batch))
            continue
        take = min(amount, batch.remaining)
        if take > 0:
            ledger.write_entries(
                [Take(batch_id=batch.pk, amount=take)],
                direction=Direction.DEBIT,
                action_type="plan.rollover",
                action_id=f"{sub.pk}:{batch.pk}",
                actor=ACTOR,
            )
            amount -= take


def _revoke_beyond(sub: Subscription, at: datetime) -> None:
    """Revoke the subscription's batches (its periods' and the units rolled into them) that
    would still be usable after `at`; exhausted ones too, so units a hold gives back later do
    not come alive again. Locked in spend order, as every spender locks them."""
    ids = list(
        QuotaBatch.objects.filter(
            Q(subscription_grant__subscription=sub) | Q(rolled_into__subscription=sub),
            state__in=[BatchState.ACTIVE, BatchState.EXHAUSTED],
            expires_at__gt=at,
        ).values_list("pk", flat=True)
    )
    for batch in ledger.lock_batches(QuotaBatch.objects.filter(pk__in=ids)):
        if batch.state not in (BatchState.ACTIVE, BatchState.EXHAUSTED):
            continue  # closed meanwhile
        ledger.batch_close(
            batch=batch, state=BatchState.REVOKED, action_type="plan.ended",
            action_id=str(sub.pk), actor=ACTOR,
        )


def _end(sub: Subscription, status: str, at: datetime) -> None:
    """End a subscription: no more periods; what it granted beyond `at` is revoked."""
    sub.status = status
    sub.ended_at = at
    sub.next_due_at = None
    _revoke_beyond(sub, at)
    signal = (
        signals.subscription_cancelled
        if status == SubscriptionStatus.CANCELLED
        else signals.subscription_expired
    )
    signal.send(sender=Subscription, subscription=sub)


def _grace() -> timedelta:
    return timedelta(days=int(current_settings().get("subscription_grace_days") or 0))


def _next_due(sub: Subscription) -> datetime | None:
    """When the sweep next has work for this subscription."""
    if sub.status not in (
        SubscriptionStatus.TRIALING, SubscriptionStatus.ACTIVE, SubscriptionStatus.PAST_DUE
    ):
        return None
    if sub.status == SubscriptionStatus.PAST_DUE:
        return sub.covered_until + _grace()
    candidates = [sub.current_period_end]
    if sub.version.price == 0 and not sub.cancel_at_period_end and (
        sub.covered_until == sub.current_period_end
    ):
        candidates.append(sub.current_period_end - LOOKAHEAD)
    for entitlement in _allowances(sub.version):
        last = (
            SubscriptionGrant.objects.filter(subscription=sub, entitlement=entitlement)
            .order_by("-period_index")
            .values_list("period_index", flat=True)
            .first()
        )
        start = _boundary(sub, entitlement, 0 if last is None else last + 1)
        if start < sub.covered_until:
            candidates.append(start - LOOKAHEAD)
    unrolled = (
        SubscriptionGrant.objects.filter(
            subscription=sub, rolled_over=False, entitlement__rollover_cap__gt=0,
            period_end__lt=sub.covered_until,
        )
        .order_by("period_end")
        .values_list("period_end", flat=True)
        .first()
    )
    if unrolled is not None:
        candidates.append(unrolled)
    return min(candidates)


def _schedule(sub: Subscription) -> None:
    sub.next_due_at = _next_due(sub)
    if sub.next_due_at is not None:
        note_sweep_due(sub.next_due_at)


def subscription_create(
    *,
    customer: Customer,
    plan: Plan,
    version_number: int | None = None,
    trial: bool = True,
    metadata: dict[str, Any] | None = None,
) -> Subscription:
    """Subscribe a customer to a plan's current version (or `version_number`).

    Starts a trial when the version has `trial_days` and `trial` is true, else the first billing
    period: call it once that period is paid for (a free plan needs nothing). Raises
    InactivePlan (422), PlanVersionNotFound (404), PlanVersionRetired and SubscriptionExists (409).
    """
    if not plan.is_active:
        raise errors.InactivePlan()
    number = plan.current_version if version_number is None else version_number
    version = PlanVersion.objects.filter(plan=plan, version=number).first()
    if version is None:
        raise errors.PlanVersionNotFound()
    if version.retired_at is not None:
        raise errors.PlanVersionRetired()
    now = clock.now()
    with service_atomic():
        # FOR KEY SHARE, as spenders take it: the access batches are explicit windows (no
        # "extend from where access ends" to serialise), and a stronger lock here would
        # deadlock with the expiry sweep, whose commit checks its batches' customers.
        customer = ledger.lock_customer(customer)
        trialing = trial and version.trial_days > 0
        end = (
            now + timedelta(days=version.trial_days)
            if trialing
            else _after(now, version.interval_unit, version.interval_count)
        )
        sub = Subscription(
            customer=customer, plan=plan, version=version,
            status=SubscriptionStatus.TRIALING if trialing else SubscriptionStatus.ACTIVE,
            anchored_at=now, billing_anchor=end if trialing else now,
            period_number=0 if trialing else 1, current_period_start=now, current_period_end=end,
            covered_until=end, trial_end=end if trialing else None, metadata=metadata or {},
        )
        try:
            with transaction.atomic():
                sub.save(force_insert=True)
        except IntegrityError as exc:
            raise errors.SubscriptionExists(
                f"The customer already has a live subscription to {plan.key}."
            ) from exc
        _write_access(sub, now, end, sub.period_number)
        _pre_renew(sub, now)
        _write_allowances(sub, now)
        _schedule(sub)
        sub.save(update_fields=["covered_until", "next_due_at"])
        signals.subscription_created.send(sender=Subscription, subscription=sub)
    return sub


def _locked_current(subscription: Subscription) -> Subscription:
    """The subscription locked (its customer first, as a merge and the sweep lock them) and
    brought up to date: a period that has ended is settled before a cancel or resume."""
    ledger.lock_customer_row(subscription.customer_id)
    sub = (
        Subscription.objects.select_for_update(of=("self",))
        .select_related("version", "plan")
        .get(pk=subscription.pk)
    )
    now = clock.now()
    if sub.next_due_at is not None and sub.next_due_at <= now:
        _advance(sub, now)
    return sub


def subscription_cancel(*, subscription: Subscription) -> Subscription:
    """Cancel at the end of the current period (a `past_due` one ends now). 409
    `subscription_not_active` once it has ended."""
    with service_atomic():
        sub = _locked_current(subscription)
        if sub.status == SubscriptionStatus.PAST_DUE:
            _end(sub, SubscriptionStatus.CANCELLED, clock.now())
            sub.save()
        elif sub.status in (SubscriptionStatus.TRIALING, SubscriptionStatus.ACTIVE):
            sub.cancel_at_period_end = True
            _schedule(sub)
            sub.save(update_fields=["cancel_at_period_end", "next_due_at", "updated_at"])
        else:
            raise errors.SubscriptionNotActive("The subscription has ended.")
    return sub


def subscription_resume(*, subscription: Subscription) -> Subscription:
    """Undo a cancellation at period end before the period ends (409 otherwise)."""
    with service_atomic():
        sub = _locked_current(subscription)
        if not sub.cancel_at_period_end or sub.status not in (
            SubscriptionStatus.TRIALING, SubscriptionStatus.ACTIVE
        ):
            raise errors.SubscriptionNotActive("Only a subscription cancelled at period end, "
                                               "before that end, can resume.")
        sub.cancel_at_period_end = False
        _schedule(sub)
        sub.save(update_fields=["cancel_at_period_end", "next_due_at", "updated_at"])
    return sub


def _advance(sub: Subscription, now: datetime) -> None:
    """Everything due for one locked subscription, in time order, each step once."""
    if sub.status in (SubscriptionStatus.TRIALING, SubscriptionStatus.ACTIVE):
        while sub.current_period_end <= now:
            if sub.cancel_at_period_end:
                _end(sub, SubscriptionStatus.CANCELLED, sub.current_period_end)
                break
            _pre_renew(sub, sub.current_period_end)  # a free plan's, if the sweep is late
            if sub.covered_until == sub.current_period_end:
                # Unpaid: its rights end with the period paid for, allowances included.
                sub.status = SubscriptionStatus.PAST_DUE
                _revoke_beyond(sub, sub.covered_until)
                signals.subscription_past_due.send(sender=Subscription, subscription=sub)
                break
            _write_allowances(sub, sub.current_period_end)
            _roll_over(sub, sub.current_period_end)
            # The next period was granted: it begins now.
            sub.period_number += 1
            sub.current_period_start = sub.current_period_end
            sub.current_period_end = _after(
                sub.billing_anchor, sub.version.interval_unit, sub.version.interval_count,
                sub.period_number,
            )
            sub.status = SubscriptionStatus.ACTIVE
            signals.subscription_renewed.send(sender=Subscription, subscription=sub)
    if sub.status in (SubscriptionStatus.TRIALING, SubscriptionStatus.ACTIVE):
        _pre_renew(sub, now)
        _write_allowances(sub, now)
    if sub.status != SubscriptionStatus.CANCELLED:
        _roll_over(sub, now)
    if sub.status == SubscriptionStatus.PAST_DUE and sub.covered_until + _grace() <= now:
        _end(sub, SubscriptionStatus.EXPIRED, sub.covered_until + _grace())
    _schedule(sub)
    sub.save()


def subscriptions_advance_due(*, limit: int = ADVANCE_CHUNK) -> int:
    """Advance the subscriptions whose `next_due_at` has come; how many were looked at.

    One transaction per subscription, locking its customer first and then the subscription
    (skipped if another sweep holds it), the order a merge locks them in. A subscription whose
    step fails is logged and left for the next run; the others, and the rest of the sweep, go on.
    """
    now = clock.now()
    due = list(
        Subscription.objects.filter(next_due_at__lte=now)
        .order_by("next_due_at")
        .values_list("pk", "customer_id")[:limit]
    )
    for pk, customer_id in due:
        try:
            with transaction.atomic():
                acting = ledger.lock_customer_row(customer_id)
                sub = (
                    Subscription.objects.select_for_update(skip_locked=True, of=("self",))
                    .filter(pk=pk, next_due_at__lte=now)
                    .select_related("version", "plan")
                    .first()
                )
                if sub is None:
                    continue  # another sweep has it, or has done it
                if acting != sub.customer_id:  # merged meanwhile: rights go to the survivor
                    sub.customer_id = acting
                _advance(sub, now)
        except Exception:
            logger.exception("advancing subscription %s failed", pk)
    return len(due)
