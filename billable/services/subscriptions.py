"""Subscriptions to plan versions: their periods, the rights they grant, and their allowances.

A subscription starts in a trial (when its version has `trial_days` and one is asked for) or in
its first billing period. Its rights are batches, so balance and consume need nothing new:

- **access** entitlements: one period (or unlimited) batch per billing period, valid from the
  period's start to its end;
- **allowance** entitlements: one quantity batch per reset period, in runs anchored at
  `anchored_at` (period `allowance_base` starts there; the next at calendar steps from the
  anchor, so Jan 31 + 1 month is Feb 28/29 and the next boundary is Mar 31 again). A trial's
  run ends with the trial (`allowance_until`); the paid periods after it, and a subscription
  paid again after a lapse, start a new run where their billing periods start. Each period's
  batch is written once (`SubscriptionGrant`, unique per subscription, entitlement and period
  index) up to `LOOKAHEAD` before the period starts, valid from its start, expiring at its end.
  A consume is charged to the period its time falls in, so a consume at the boundary instant
  can use only the new period's units. Purchased and bonus batches are never touched.

Rights are granted only up to `covered_until`: the end of the last period paid for, free, or
trialled. A free plan's next billing period is granted `LOOKAHEAD` before it begins (access
batches valid from the boundary), so nothing lapses at the boundary instant; a paid plan's when
its **renewal order** is confirmed (`subscription_renewal_paid`): the sweep makes that order
and sends `subscription.renewal_due` the tenant's `subscription_renewal_notice_days` before the
period ends. A cancellation at period end revokes what was granted beyond it.
`subscriptions_advance_due` (the sweep, before it expires batches) moves each subscription on:
it writes the allowance periods that are due, carries each ended period's unused units into the
next (at most the entitlement's `rollover_cap`: a debit of the old batch and a new batch in the
next period), announces renewals, and at the end of a billing period renews a free or paid-for
plan, ends a subscription cancelled at period end, and turns an unpaid one `past_due` (nothing
is carried across the lapse), then `expired` once the tenant's `subscription_grace_days` have
passed. A `past_due` subscription paid again starts its paid period at the payment.
Every step is written once however many sweeps run: the subscription row is locked (skipping
rows another sweep holds), and each granted period is a unique `SubscriptionGrant` row.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from django.db import IntegrityError, connection, transaction
from django.db.models import Q, Sum

from billable import clock, errors, signals
from billable.models import (
    LIVE_SUBSCRIPTION_STATUSES,
    BatchState,
    Customer,
    Direction,
    EntitlementType,
    LedgerEntry,
    Order,
    OrderItem,
    OrderStatus,
    Plan,
    PlanEntitlement,
    PlanVersion,
    QuotaBatch,
    Subscription,
    SubscriptionGrant,
    SubscriptionStatus,
    TrialHistory,
    UpgradeAllowance,
)
from billable.periods import interval_period, period_end
from billable.results import ChangeAt, ChangeResult
from billable.selectors import customer_identity_hashes, trial_taken
from billable.services import ledger
from billable.services.ledger import Take
from billable.tenancy import currency_digits, current_settings, note_sweep_due, sweep_due_deferred
from billing_platform.core.db import service_atomic
from billing_platform.core.scope import run_scope, scoped

LOOKAHEAD = timedelta(hours=1)
ADVANCE_CHUNK = 200
ACTOR = "system:subscriptions"

logger = logging.getLogger("billable.subscriptions")


def _after(start: datetime, unit: str, count: int, times: int = 1) -> datetime:
    step_unit, value = interval_period(unit, count)
    end = period_end(start, step_unit, value, times)
    assert end is not None  # plan intervals are never `forever`
    return end


def _run(sub: Subscription, entitlement: PlanEntitlement) -> tuple[datetime, int]:
    """The anchor of an entitlement's current run of allowance periods, and the index of the
    period that starts there."""
    own = (sub.allowance_runs or {}).get(str(entitlement.pk))
    if own is not None:
        return datetime.fromisoformat(own[0]), int(own[1])
    return sub.anchored_at, sub.allowance_base


def _boundary(sub: Subscription, entitlement: PlanEntitlement, index: int) -> datetime:
    """The start of allowance period `index` of the current run (`index >= its base`)."""
    anchor, base = _run(sub, entitlement)
    steps = index - base
    if steps == 0:
        return anchor
    return _after(anchor, entitlement.reset_unit, entitlement.reset_count or 1, steps)


def _allowance_end(sub: Subscription, entitlement: PlanEntitlement, index: int) -> datetime:
    """The end of allowance period `index`: the next boundary, or the trial's end."""
    end = _boundary(sub, entitlement, index + 1)
    return min(end, sub.allowance_until) if sub.allowance_until is not None else end


def _next_index(sub: Subscription, entitlement: PlanEntitlement) -> int:
    last = (
        SubscriptionGrant.objects.filter(subscription=sub, entitlement=entitlement)
        .order_by("-period_index")
        .values_list("period_index", flat=True)
        .first()
    )
    return max(_run(sub, entitlement)[1], 0 if last is None else last + 1)


def _new_allowance_run(sub: Subscription, at: datetime, until: datetime | None = None) -> None:
    """Start a new run of allowance periods at `at` (after a trial, or when a lapsed
    subscription is paid again), aligned with the billing periods that start there."""
    last = (
        SubscriptionGrant.objects.filter(subscription=sub)
        .order_by("-period_index")
        .values_list("period_index", flat=True)
        .first()
    )
    sub.allowance_base = 0 if last is None else last + 1
    sub.anchored_at = at
    sub.allowance_until = until
    sub.allowance_runs = {}


def _bounds(sub: Subscription, number: int) -> tuple[datetime, datetime]:
    """The start and end of billing period `number` (`number >= anchor_period`)."""
    if sub.scheduled_version is not None and number > sub.period_number:
        # The scheduled version's periods, from the end of the current one.
        scheduled = sub.scheduled_version
        start = sub.current_period_end
        if number > sub.period_number + 1:
            start = _after(start, scheduled.interval_unit, scheduled.interval_count,
                           number - sub.period_number - 1)
        return start, _after(start, scheduled.interval_unit, scheduled.interval_count)
    version = sub.version
    steps = number - sub.anchor_period
    start = (
        sub.billing_anchor
        if steps == 0
        else _after(sub.billing_anchor, version.interval_unit, version.interval_count, steps)
    )
    end = _after(sub.billing_anchor, version.interval_unit, version.interval_count, steps + 1)
    return start, end


def _version_for(sub: Subscription, number: int) -> PlanVersion:
    """The version billing period `number` is under: a scheduled change's, after the current."""
    if sub.scheduled_version is not None and number > sub.period_number:
        return sub.scheduled_version
    return sub.version


def _entitlements(version: PlanVersion) -> list[PlanEntitlement]:
    """A version's entitlements; read once per sweep run (they never change once written)."""
    schema = connection.schema_name  # type: ignore[attr-defined]
    return list(scoped(
        ("plan_entitlements", schema, version.pk),
        lambda: list(version.entitlements.select_related("product").all()),
    ))


def _setting(name: str) -> int:
    schema = connection.schema_name  # type: ignore[attr-defined]
    return int(scoped(("tenant_settings", schema), current_settings).get(name) or 0)


def _allowances(version: PlanVersion) -> list[PlanEntitlement]:
    return [e for e in _entitlements(version) if e.entitlement_type == EntitlementType.ALLOWANCE]


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
    """Period `index` of one entitlement: its batch (valid from `start`, expiring at `end`;
    none for no units) and the row that says it was written."""
    assert entitlement.product is not None
    if units <= 0:
        SubscriptionGrant.objects.create(
            subscription=sub, entitlement=entitlement, period_index=index,
            period_start=start, period_end=end, batch=None,
        )
        return
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


def _write_access(
    sub: Subscription, start: datetime, end: datetime, number: int,
    version: PlanVersion | None = None,
) -> None:
    """The access batches of billing period `number` (0 is a trial), under the version that
    period is under (or `version`)."""
    version = version or _version_for(sub, number)
    for entitlement in _entitlements(version):
        if entitlement.entitlement_type != EntitlementType.ACCESS:
            continue
        _grant(sub, entitlement, number, start, end, units=1, action_type="plan.access")


def _pre_renew(sub: Subscription, now: datetime) -> None:
    """Grant a free plan's next billing period `LOOKAHEAD` ahead of its start, so that its
    rights are there at the boundary instant (the period itself begins at the boundary)."""
    if (
        sub.status in (SubscriptionStatus.TRIALING, SubscriptionStatus.ACTIVE)
        and _version_for(sub, sub.period_number + 1).price == 0
        and not sub.cancel_at_period_end
        and sub.covered_until == sub.current_period_end
        and sub.covered_until - LOOKAHEAD <= now
    ):
        number = sub.period_number + 1
        _start, end = _bounds(sub, number)
        _write_access(sub, sub.covered_until, end, number)
        sub.covered_until = end
        sub.covered_period = number


def _write_allowances(sub: Subscription, now: datetime) -> None:
    """Write every allowance period that starts before both `covered_until` and the look-ahead;
    past a trial's end that is covered, in a new run anchored where the paid periods begin."""
    horizon = now + LOOKAHEAD
    if (
        sub.allowance_until is not None
        and sub.allowance_until <= horizon
        and sub.covered_until > sub.allowance_until
    ):
        _write_allowance_run(sub, horizon)  # the run's last periods, if the sweep is late
        boundary = sub.allowance_until
        if sub.scheduled_version is not None:
            # The next period is under the scheduled version: it takes over from here, and
            # nothing of the old one (an allowance that resets less often than it bills)
            # goes on past the boundary.
            sub.billing_anchor, sub.anchor_period = boundary, sub.period_number + 1
            _close_version_rights(sub, boundary)
            _switch_version(sub, sub.scheduled_version, boundary)
        _new_allowance_run(sub, boundary)
    _write_allowance_run(sub, horizon)


def _switch_version(sub: Subscription, version: PlanVersion, at: datetime) -> None:
    """Put the subscription under `version` from `at`. Nothing is carried from the old
    version's allowance periods into the new one's."""
    previous = sub.version
    sub.version = version
    sub.plan = version.plan
    sub.scheduled_version = None
    SubscriptionGrant.objects.filter(
        subscription=sub, entitlement__version=previous, rolled_over=False
    ).update(rolled_over=True)
    signals.subscription_plan_changed.send(
        sender=Subscription, subscription=sub, previous_version=previous, at=at
    )


def _write_allowance_run(sub: Subscription, horizon: datetime) -> None:
    for entitlement in _allowances(sub.version):
        index = _next_index(sub, entitlement)
        start = _boundary(sub, entitlement, index)
        while (
            start <= horizon
            and start < sub.covered_until
            and (sub.allowance_until is None or start < sub.allowance_until)
        ):
            end = _allowance_end(sub, entitlement, index)
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
        held = (
            [QuotaBatch.objects.select_for_update().get(pk=period.batch_id)]
            if period.batch_id is not None
            else []
        )
        same = SubscriptionGrant.objects.filter(subscription=sub, entitlement=entitlement)
        carried_in = (
            same.filter(period_index__lt=period.period_index)
            .order_by("-period_index")
            .values_list("rollover_batch_id", flat=True)
            .first()
        )
        if carried_in is not None:
            held.insert(0, QuotaBatch.objects.select_for_update().get(pk=carried_in))
        following = (
            same.filter(period_index__gt=period.period_index).order_by("period_index").first()
        )
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
    open_states = (BatchState.ACTIVE, BatchState.EXHAUSTED, BatchState.PAUSED)
    ids = list(
        QuotaBatch.objects.filter(
            Q(subscription_grant__subscription=sub) | Q(rolled_into__subscription=sub),
        )
        .filter(
            # a paused batch whatever its expiry: the pause stopped its clock
            Q(state__in=[BatchState.ACTIVE, BatchState.EXHAUSTED], expires_at__gt=at)
            | Q(state=BatchState.PAUSED)
        )
        .values_list("pk", flat=True)
    )
    _revoke(sub, ids, action_type="plan.ended", states=open_states)


def _revoke(
    sub: Subscription, ids: list[Any], *, action_type: str,
    states: tuple[str, ...] = (BatchState.ACTIVE, BatchState.EXHAUSTED),
) -> None:
    """Revoke these batches of the subscription, locked in spend order as every spender locks
    them; one closed meanwhile (no longer in `states`) is left as it is."""
    for batch in ledger.lock_batches(QuotaBatch.objects.filter(pk__in=ids)):
        if batch.state in states:
            ledger.batch_close(
                batch=batch, state=BatchState.REVOKED, action_type=action_type,
                action_id=str(sub.pk), actor=ACTOR,
            )


def _end(sub: Subscription, status: str, at: datetime) -> None:
    """End a subscription: no more periods; what it granted beyond `at` is revoked."""
    sub.status = status
    sub.ended_at = at
    sub.next_due_at = None
    sub.scheduled_version = None
    _revoke_beyond(sub, at)
    _cancel_renewals(sub, f"subscription {status}")
    signal = (
        signals.subscription_cancelled
        if status == SubscriptionStatus.CANCELLED
        else signals.subscription_expired
    )
    signal.send(sender=Subscription, subscription=sub)


def _grace() -> timedelta:
    return timedelta(days=_setting("subscription_grace_days"))


def _notice() -> timedelta:
    return timedelta(days=_setting("subscription_renewal_notice_days"))


def _renewal_due_at(sub: Subscription) -> datetime | None:
    """When the next period's renewal is to be announced: `subscription_renewal_notice_days`
    before the current period ends (at its start, for a shorter period), once per period, for
    a paid plan that is neither paid ahead nor cancelled at period end."""
    if (
        sub.status not in (SubscriptionStatus.TRIALING, SubscriptionStatus.ACTIVE)
        or _version_for(sub, sub.period_number + 1).price == 0
        or sub.cancel_at_period_end
        or sub.covered_period > sub.period_number
        or sub.renewal_notified_period > sub.period_number
    ):
        return None
    return max(sub.current_period_start, sub.current_period_end - _notice())


def _renewal_order(sub: Subscription, number: int) -> tuple[Order, bool]:
    """The order that pays for billing period `number`: the pending or paid one, or a new
    pending one at the version's price (and whether it is new)."""
    existing = Order.objects.filter(
        subscription=sub, period_number=number,
        status__in=[OrderStatus.PENDING, OrderStatus.PAID],
    ).first()
    if existing is not None:
        return existing, False
    version = _version_for(sub, number)
    plan = version.plan
    order = Order.objects.create(
        customer_id=sub.customer_id, total=version.price, currency=version.currency,
        subscription=sub, period_number=number,
        metadata={"subscription_id": str(sub.pk), "plan": plan.key, "version": version.version,
                  "period": number},
    )
    OrderItem.objects.create(
        order=order, sku=plan.key, name=plan.name, quantity=1,
        unit_price=version.price, snapshot=[],
    )
    signals.order_created.send(sender=Order, order=order, customer=order.customer)
    return order, True


def _announce_renewal(sub: Subscription, now: datetime) -> None:
    """Send `subscription.renewal_due` with the pending order for the next period, once."""
    due = _renewal_due_at(sub)
    if due is None or due > now:
        return
    number = sub.period_number + 1
    order, _new = _renewal_order(sub, number)
    sub.renewal_notified_period = number
    signals.subscription_renewal_due.send(sender=Subscription, subscription=sub, order=order)


def _cancel_renewals(sub: Subscription, reason: str) -> None:
    """Cancel the subscription's pending renewal orders (it ends, or will not renew)."""
    for order in Order.objects.select_for_update().filter(
        subscription=sub, status=OrderStatus.PENDING
    ).order_by("period_number"):
        order.status = OrderStatus.CANCELLED
        order.cancelled_at = clock.now()
        order.reason = reason
        order.save(update_fields=["status", "cancelled_at", "reason"])
        signals.order_cancelled.send(sender=Order, order=order, customer=order.customer)


def _next_due(sub: Subscription) -> datetime | None:
    """When the sweep next has work for this subscription."""
    if sub.status not in (
        SubscriptionStatus.TRIALING, SubscriptionStatus.ACTIVE, SubscriptionStatus.PAST_DUE
    ):
        return None
    if sub.status == SubscriptionStatus.PAST_DUE:
        return sub.covered_until + _grace()
    candidates = [sub.current_period_end]
    renewal = _renewal_due_at(sub)
    if renewal is not None:
        candidates.append(renewal)
    if _version_for(sub, sub.period_number + 1).price == 0 and not sub.cancel_at_period_end and (
        sub.covered_until == sub.current_period_end
    ):
        candidates.append(sub.current_period_end - LOOKAHEAD)
    if sub.allowance_until is not None and sub.covered_until > sub.allowance_until:
        candidates.append(sub.allowance_until - LOOKAHEAD)
    for entitlement in _allowances(sub.version):
        start = _boundary(sub, entitlement, _next_index(sub, entitlement))
        if start < sub.covered_until and (
            sub.allowance_until is None or start < sub.allowance_until
        ):
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
    identities: dict[str, str | int] | None = None,
    metadata: dict[str, Any] | None = None,
) -> Subscription:
    """Subscribe a customer to a plan's current version (or `version_number`).

    Starts a trial when the version has `trial_days` and `trial` is true, else the first billing
    period: call it once that period is paid for (a free plan needs nothing). A trial is one per
    person, as trial grants are: the customer and its `identities` are checked against the
    hashed trial history (409 `trial_already_used`, to subscribe again with `trial` false once
    paid). Raises InactivePlan (422), PlanVersionNotFound (404), PlanVersionRetired and
    SubscriptionExists (409).
    """
    if not plan.is_active:
        raise errors.InactivePlan()
    number = plan.current_version if version_number is None else version_number
    version = PlanVersion.objects.filter(plan=plan, version=number).first()
    if version is None:
        raise errors.PlanVersionNotFound()
    if version.retired_at is not None:
        raise errors.PlanVersionRetired()
    trialing = trial and version.trial_days > 0
    hashes = customer_identity_hashes(customer, identities) if trialing else None
    now = clock.now()
    with service_atomic():
        # FOR KEY SHARE, as spenders take it: the access batches are explicit windows (no
        # "extend from where access ends" to serialise), and a stronger lock here would
        # deadlock with the expiry sweep, whose commit checks its batches' customers.
        customer = ledger.lock_customer(customer)
        if hashes is not None and trial_taken(customer, hashes):
            raise errors.TrialAlreadyUsed()
        if Subscription.objects.filter(
            customer=customer, scheduled_version__plan=plan,
            status__in=LIVE_SUBSCRIPTION_STATUSES,
        ).exists():
            raise errors.SubscriptionExists(
                f"The customer has a subscription changing to {plan.key} at its period end."
            )
        end = (
            now + timedelta(days=version.trial_days)
            if trialing
            else _after(now, version.interval_unit, version.interval_count)
        )
        sub = Subscription(
            customer=customer, plan=plan, version=version,
            status=SubscriptionStatus.TRIALING if trialing else SubscriptionStatus.ACTIVE,
            anchored_at=now, allowance_until=end if trialing else None,
            billing_anchor=end if trialing else now,
            period_number=0 if trialing else 1, current_period_start=now, current_period_end=end,
            covered_until=end, covered_period=0 if trialing else 1,
            renewal_notified_period=0 if trialing else 1,
            trial_end=end if trialing else None, metadata=metadata or {},
        )
        try:
            with transaction.atomic():
                sub.save(force_insert=True)
        except IntegrityError as exc:
            raise errors.SubscriptionExists(
                f"The customer already has a live subscription to {plan.key}."
            ) from exc
        if hashes is not None:
            try:
                with transaction.atomic():
                    TrialHistory.objects.bulk_create(
                        TrialHistory(identity_hash=value, subscription=sub)
                        for value in hashes.current
                    )
            except IntegrityError as exc:  # a concurrent trial of the same person won
                raise errors.TrialAlreadyUsed() from exc
        _write_access(sub, now, end, sub.period_number)
        _pre_renew(sub, now)
        _write_allowances(sub, now)
        signals.subscription_created.send(sender=Subscription, subscription=sub)
        _announce_renewal(sub, now)
        _schedule(sub)
        sub.save(update_fields=[
            "covered_until", "covered_period", "renewal_notified_period", "next_due_at",
        ])
    return sub


def _locked_current(subscription: Subscription) -> Subscription:
    """The subscription locked (its customer first, as a merge and the sweep lock them) and
    brought up to date: a period that has ended is settled before a cancel or resume."""
    ledger.lock_customer_row(subscription.customer_id)
    sub = (
        Subscription.objects.select_for_update(of=("self",))
        .select_related("version", "plan", "customer", "scheduled_version")
        .get(pk=subscription.pk)
    )
    now = clock.now()
    if sub.next_due_at is not None and sub.next_due_at <= now:
        _advance(sub, now)
    return sub


def subscription_cancel(*, subscription: Subscription) -> Subscription:
    """Cancel at the end of the current period (a `past_due` or `paused` one ends now). 409
    `subscription_not_active` once it has ended."""
    with service_atomic():
        sub = _locked_current(subscription)
        if sub.status in (SubscriptionStatus.PAST_DUE, SubscriptionStatus.PAUSED):
            _end(sub, SubscriptionStatus.CANCELLED, clock.now())
            sub.paused_at = None
            sub.save()
        elif sub.status in (SubscriptionStatus.TRIALING, SubscriptionStatus.ACTIVE):
            sub.cancel_at_period_end = True
            # A free plan's next period granted ahead is revoked when this one ends; a period
            # paid ahead is kept, and the subscription ends after it. A pending renewal order
            # is withdrawn now.
            _cancel_renewals(sub, "subscription cancelled at period end")
            _schedule(sub)
            sub.save()
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
        # The renewal order the cancellation withdrew is announced again.
        sub.renewal_notified_period = min(sub.renewal_notified_period, sub.period_number)
        _pre_renew(sub, clock.now())
        _announce_renewal(sub, clock.now())
        _schedule(sub)
        sub.save()
    return sub


def _advance(sub: Subscription, now: datetime) -> None:
    """Everything due for one locked subscription, in time order, each step once."""
    if sub.status in (SubscriptionStatus.TRIALING, SubscriptionStatus.ACTIVE):
        while sub.current_period_end <= now:
            if sub.cancel_at_period_end and not _paid_ahead(sub):
                _end(sub, SubscriptionStatus.CANCELLED, sub.current_period_end)
                break
            _pre_renew(sub, sub.current_period_end)  # a free plan's, if the sweep is late
            _announce_renewal(sub, now)  # with no notice days, it is due at the end itself
            if sub.covered_until == sub.current_period_end:
                # Unpaid: its rights end with the period paid for, allowances included.
                sub.status = SubscriptionStatus.PAST_DUE
                _revoke_beyond(sub, sub.covered_until)
                # Nothing is carried across a lapse: paid again, it starts afresh.
                SubscriptionGrant.objects.filter(subscription=sub, rolled_over=False).update(
                    rolled_over=True
                )
                signals.subscription_past_due.send(sender=Subscription, subscription=sub)
                break
            _write_allowances(sub, sub.current_period_end)
            _roll_over(sub, sub.current_period_end)
            # The next period was granted: it begins now.
            sub.period_number += 1
            sub.current_period_start, sub.current_period_end = _bounds(sub, sub.period_number)
            sub.status = SubscriptionStatus.ACTIVE
            signals.subscription_renewed.send(sender=Subscription, subscription=sub)
    if sub.status in (SubscriptionStatus.TRIALING, SubscriptionStatus.ACTIVE):
        _pre_renew(sub, now)
        _write_allowances(sub, now)
        _announce_renewal(sub, now)
    if sub.status != SubscriptionStatus.CANCELLED:
        _roll_over(sub, now)
    if sub.status == SubscriptionStatus.PAST_DUE and sub.covered_until + _grace() <= now:
        _end(sub, SubscriptionStatus.EXPIRED, sub.covered_until + _grace())
    _schedule(sub)
    sub.save()


def _paid_ahead(sub: Subscription) -> bool:
    """Whether the next billing period was paid for by a renewal order (a cancellation at
    period end then takes effect at the end of that one)."""
    return sub.covered_period > sub.period_number and Order.objects.filter(
        subscription=sub, period_number=sub.period_number + 1, status=OrderStatus.PAID
    ).exists()


def _locked_for_order(order: Order) -> Subscription:
    """The renewal order's subscription, locked and brought up to date (the caller holds the
    customer's row FOR UPDATE and the order's)."""
    assert order.subscription_id is not None
    sub = (
        Subscription.objects.select_for_update(of=("self",))
        .select_related("version", "plan", "customer", "scheduled_version")
        .get(pk=order.subscription_id)
    )
    now = clock.now()
    if sub.next_due_at is not None and sub.next_due_at <= now:
        _advance(sub, now)
    return sub


def subscription_renewal_paid(*, order: Order) -> Subscription:
    """Apply a confirmed renewal order: its billing period is granted (access from the
    period's start, allowances as their periods come) and `covered_until` moves to its end. A
    `past_due` subscription becomes active again and its periods move on to the present.

    Runs inside the order's confirmation; raises SubscriptionNotActive (409) when the
    subscription has ended (the order stays pending: cancel it and refund the payment), and
    RenewalOutOfOrder (409) when the order is not for the next period to pay.
    """
    sub = _locked_for_order(order)
    if sub.status not in LIVE_SUBSCRIPTION_STATUSES or sub.status == SubscriptionStatus.PAUSED:
        raise errors.SubscriptionNotActive(
            f"The subscription is {sub.status}: its renewal cannot be confirmed"
            + (" until it is unpaused." if sub.status == SubscriptionStatus.PAUSED else ".")
        )
    number = order.period_number
    assert number is not None
    if number != sub.covered_period + 1:
        raise errors.RenewalOutOfOrder(
            f"The order pays for period {number}; the subscription is paid through period "
            f"{sub.covered_period}."
        )
    now = clock.now()
    if sub.status == SubscriptionStatus.PAST_DUE:
        # Paid after it lapsed: the period paid for starts now, and its allowances with it.
        sub.billing_anchor, sub.anchor_period = now, number
        if sub.scheduled_version is not None:
            _switch_version(sub, sub.scheduled_version, now)
        _new_allowance_run(sub, now)
        sub.status = SubscriptionStatus.ACTIVE  # it moves into that period below
    start, end = _bounds(sub, number)
    _write_access(sub, start, end, number)
    sub.covered_until = end
    sub.covered_period = number
    _advance(sub, now)
    return sub


def _uncover(sub: Subscription, number: int) -> None:
    """Take back billing period `number` and later ones, which have not begun: their batches
    are revoked and their grants forgotten, so that paying for them again grants them anew."""
    start, _end_at = _bounds(sub, number)
    later = SubscriptionGrant.objects.filter(subscription=sub, period_start__gte=start)
    # Only these periods' own batches: an allowance period that began before `start` (a reset
    # that does not fall on the billing boundary) is part of what was paid for, and stays.
    ids = [pk for pk in later.values_list("batch_id", flat=True) if pk is not None]
    _revoke(sub, ids, action_type="plan.ended")
    later.delete()
    sub.covered_until = start
    sub.covered_period = number - 1


def subscription_renewal_refunded(*, order: Order) -> None:
    """A paid renewal order was refunded. A period that has not begun is taken back (only the
    last one paid for: RenewalOutOfOrder otherwise) and the subscription is cancelled at the
    end of the current one (resume it to renew). The current period ends the subscription
    now, revoking what it granted from now on (RenewalOutOfOrder while a later one is paid
    for). A period that has ended, or a subscription that has, is left as it is."""
    sub = _locked_for_order(order)
    if sub.status not in LIVE_SUBSCRIPTION_STATUSES:
        return
    if sub.status == SubscriptionStatus.PAUSED:
        raise errors.SubscriptionNotActive("Unpause the subscription before refunding a renewal.")
    number = order.period_number
    assert number is not None
    now = clock.now()
    if number < sub.period_number:
        return  # an ended period: nothing of it is left to take back
    later_paid = (
        _paid_ahead(sub) if number == sub.period_number else number != sub.covered_period
    )
    if later_paid:
        raise errors.RenewalOutOfOrder(
            f"Period {sub.covered_period} is paid for after this one: refund it first."
        )
    if number > sub.period_number:  # not begun
        _uncover(sub, number)
        sub.cancel_at_period_end = True
        _cancel_renewals(sub, "renewal refunded")
    else:
        _end(sub, SubscriptionStatus.CANCELLED, now)
    _schedule(sub)
    sub.save()


def subscription_renewal_order(*, subscription: Subscription) -> tuple[Order, bool]:
    """The order that pays for the next billing period not yet paid for: the pending one, or
    a new one (and whether it is new). For a subscription whose announced order was cancelled,
    or to pay one period ahead. 409 `subscription_not_active` once it has ended or while it is
    cancelled at period end; 409 `renewal_not_needed` for a free plan or when the next period
    is paid for already."""
    with service_atomic():
        sub = _locked_current(subscription)
        if (
            sub.status not in LIVE_SUBSCRIPTION_STATUSES
            or sub.status == SubscriptionStatus.PAUSED
            or sub.cancel_at_period_end
        ):
            raise errors.SubscriptionNotActive(
                "Only a live subscription that is neither paused nor cancelled at period end "
                "renews."
            )
        if _version_for(sub, sub.covered_period + 1).price == 0:
            raise errors.RenewalNotNeeded("A free plan renews by itself.")
        if sub.covered_period > sub.period_number:
            raise errors.RenewalNotNeeded(
                f"The next period is paid for already (through {sub.covered_until.isoformat()})."
            )
        number = sub.covered_period + 1
        order, created = _renewal_order(sub, number)
        sub.renewal_notified_period = max(sub.renewal_notified_period, number)
        _schedule(sub)
        sub.save()
    return order, created


def _target_version(plan: Plan, version_number: int | None) -> PlanVersion:
    number = plan.current_version if version_number is None else version_number
    version = PlanVersion.objects.filter(plan=plan, version=number).select_related("plan").first()
    if version is None:
        raise errors.PlanVersionNotFound()
    return version


def _check_open(version: PlanVersion) -> None:
    """A version taking new subscribers: its plan active (422), itself not retired (409)."""
    if not version.plan.is_active:
        raise errors.InactivePlan()
    if version.retired_at is not None:
        raise errors.PlanVersionRetired()


def _reannounce(sub: Subscription, now: datetime) -> None:
    """The next period's terms changed: its pending renewal order is withdrawn and the renewal
    announced again at the new price (at once, if it is due)."""
    _cancel_renewals(sub, "subscription plan changed")
    sub.renewal_notified_period = min(sub.renewal_notified_period, sub.period_number)
    _pre_renew(sub, now)
    _announce_renewal(sub, now)


def _used_this_period(sub: Subscription, now: datetime) -> dict[Any, int]:
    """Units of the current allowance periods used so far, by product: over every version the
    subscription had in them (a second change in a period counts what the first left used),
    what their batches gave less what they hold and what plan debits took back."""
    used: dict[Any, int] = {}
    current = SubscriptionGrant.objects.filter(
        subscription=sub,
        entitlement__entitlement_type=EntitlementType.ALLOWANCE,
        period_start__lte=now, period_end__gt=now, batch__isnull=False,
    ).select_related("batch", "entitlement")
    for grant in current:
        assert grant.batch is not None
        taken_back = LedgerEntry.objects.filter(
            batch=grant.batch, direction=Direction.DEBIT,
            action_type__in=["plan.changed", "plan.ended", "plan.rollover", "expiry"],
        ).aggregate(total=Sum("amount"))["total"] or 0
        product = grant.entitlement.product_id
        used[product] = (
            used.get(product, 0) + grant.batch.initial - grant.batch.remaining - int(taken_back)
        )
    return used


def _close_version_rights(sub: Subscription, now: datetime) -> None:
    """Revoke what the current version's periods would still give after `now` (units rolled
    over into them stay: they were earned)."""
    ids = list(
        QuotaBatch.objects.filter(
            subscription_grant__subscription=sub,
            subscription_grant__entitlement__version=sub.version,
            state__in=[BatchState.ACTIVE, BatchState.EXHAUSTED],
            expires_at__gt=now,
        ).values_list("pk", flat=True)
    )
    _revoke(sub, ids, action_type="plan.changed")


def _micros(span: timedelta) -> int:
    return span // timedelta(microseconds=1)


def _change_now(sub: Subscription, target: PlanVersion, now: datetime) -> Decimal | None:
    old = sub.version
    used = _used_this_period(sub, now)
    _close_version_rights(sub, now)
    _switch_version(sub, target, now)
    # Back to a version it had earlier in this period: its revoked access grant gives way.
    SubscriptionGrant.objects.filter(
        subscription=sub, entitlement__version=target, period_index=sub.period_number,
        entitlement__entitlement_type=EntitlementType.ACCESS,
    ).delete()
    _write_access(sub, now, sub.current_period_end, sub.period_number, version=target)
    # A new run of allowance periods aligned with the billing period; the current one is
    # granted from now, full or in proportion to the time left, less what was used of the
    # same product this period.
    _new_allowance_run(sub, sub.current_period_start, sub.allowance_until)
    for entitlement in _allowances(target):
        index = _run(sub, entitlement)[1]
        while _boundary(sub, entitlement, index + 1) <= now:
            index += 1
        start = _boundary(sub, entitlement, index)
        end = _allowance_end(sub, entitlement, index)
        if end <= now:
            continue
        assert entitlement.amount is not None
        units = entitlement.amount
        if target.plan.upgrade_allowance == UpgradeAllowance.PRORATED:
            # whole microseconds: no float rounds 29/100 of 100 down to 28
            units = entitlement.amount * _micros(end - now) // _micros(end - start)
        units -= used.get(entitlement.product_id, 0)
        _grant(sub, entitlement, index, now, end, units=units, action_type="plan.allowance")
    if sub.status != SubscriptionStatus.ACTIVE or target.price <= old.price:
        return None
    left = Decimal(_micros(sub.current_period_end - now))
    due = (target.price - old.price) * left / Decimal(
        _micros(sub.current_period_end - sub.current_period_start)
    )
    return due.quantize(Decimal(1).scaleb(-currency_digits(target.currency)), ROUND_HALF_UP)


def subscription_change(
    *,
    subscription: Subscription,
    plan: Plan,
    version_number: int | None = None,
    at: ChangeAt | None = None,
) -> ChangeResult:
    """Move a subscription to another plan (or another version of its own).

    `at` "now" (the default for a dearer plan: an upgrade) changes the rights at once: the old
    version's periods are revoked from now, the new version's access is granted for the rest
    of the period and its allowance for the rest of the allowance period (prorated or full, the
    plan's `upgrade_allowance`; less what was used of the same product this period), and
    `amount_due` is the price difference for the time left. It keeps the billing period, so
    it needs the same billing interval. "period_end" (the default otherwise: a downgrade)
    schedules the change for the end of the current period; the next renewal is priced and
    granted under the new version. Changing to the current version withdraws a scheduled
    change. 409 `subscription_not_active` (past due, cancelled at period end, or ended),
    `plan_change_not_allowed`, `subscription_exists`; 404/409/422 for the target plan as
    `subscription_create`.
    """
    target = _target_version(plan, version_number)
    with service_atomic():
        sub = _locked_current(subscription)
        now = clock.now()
        if target.pk != sub.version_id:
            _check_open(target)
        if sub.status not in (SubscriptionStatus.TRIALING, SubscriptionStatus.ACTIVE) or (
            sub.cancel_at_period_end
        ):
            raise errors.SubscriptionNotActive(
                "Only a trialing or active subscription that is not cancelled at period end "
                "changes plan."
            )
        if target.pk == sub.version_id:
            if sub.scheduled_version is None:
                raise errors.PlanChangeNotAllowed("The subscription is on this version already.")
            if sub.covered_period > sub.period_number:
                if _version_for(sub, sub.period_number + 1).price > 0:
                    raise errors.PlanChangeNotAllowed(
                        "The next period is paid for already under the scheduled plan."
                    )
                _uncover(sub, sub.period_number + 1)  # granted ahead under the scheduled one
            sub.scheduled_version = None
            trialing = sub.status == SubscriptionStatus.TRIALING
            sub.allowance_until = sub.trial_end if trialing else None
            _reannounce(sub, now)
            _schedule(sub)
            sub.save()
            return ChangeResult(subscription=sub, at="period_end", amount_due=None)
        if target.currency != sub.version.currency:
            raise errors.PlanChangeNotAllowed(
                f"The plan is priced in {target.currency}, the subscription in "
                f"{sub.version.currency}."
            )
        if target.plan_id != sub.plan_id and Subscription.objects.filter(
            Q(plan_id=target.plan_id) | Q(scheduled_version__plan_id=target.plan_id),
            customer_id=sub.customer_id, status__in=LIVE_SUBSCRIPTION_STATUSES,
        ).exclude(pk=sub.pk).exists():
            raise errors.SubscriptionExists(
                f"The customer already has a live subscription to {target.plan.key}."
            )
        same_interval = (target.interval_unit, target.interval_count) == (
            sub.version.interval_unit, sub.version.interval_count
        )
        upgrade = target.price > sub.version.price and same_interval
        when: ChangeAt = at or ("now" if upgrade else "period_end")
        if sub.covered_period > sub.period_number:
            if _version_for(sub, sub.period_number + 1).price > 0:
                raise errors.PlanChangeNotAllowed(
                    "The next period is paid for already: refund its renewal order first."
                )
            _uncover(sub, sub.period_number + 1)  # a free plan's next period granted ahead
        amount_due = None
        if when == "now":
            if not same_interval:
                raise errors.PlanChangeNotAllowed(
                    "A change of billing interval takes effect at period end."
                )
            amount_due = _change_now(sub, target, now)
        else:
            sub.scheduled_version = target
            sub.allowance_until = sub.current_period_end
        _reannounce(sub, now)
        _write_allowances(sub, now)
        _schedule(sub)
        sub.save()
    return ChangeResult(subscription=sub, at=when, amount_due=amount_due)


def subscriptions_end_erased(*, customer_ids: list[Any]) -> int:
    """End the live subscriptions of customers being erased (cancelled now, what they granted
    from now on revoked, pending renewal orders cancelled) and blank every subscription's
    metadata; how many ended. Runs inside the erasure's transaction."""
    now = clock.now()
    for customer_id in sorted(customer_ids, key=str):
        ledger.lock_customer_row(customer_id)
    live = (
        Subscription.objects.select_for_update(of=("self",))
        .filter(customer_id__in=customer_ids, status__in=LIVE_SUBSCRIPTION_STATUSES)
        .select_related("version", "plan", "customer", "scheduled_version")
        .order_by("pk")
    )
    ended = 0
    for sub in live:
        _end(sub, SubscriptionStatus.CANCELLED, now)
        sub.paused_at = None
        sub.save()
        ended += 1
    Subscription.objects.filter(customer_id__in=customer_ids).update(metadata={})
    return ended


def subscription_pause(*, subscription: Subscription) -> Subscription:
    """Pause: the subscription's rights are frozen as they are (its batches, rolled-over units
    included, neither usable nor expiring) and its periods stop; `subscription_unpause` gives
    them back with the time left. 409 `subscription_not_active` unless trialing or active and
    not cancelled at period end; `pause_not_allowed` while the next period is paid for."""
    with service_atomic():
        sub = _locked_current(subscription)
        if sub.status not in (SubscriptionStatus.TRIALING, SubscriptionStatus.ACTIVE) or (
            sub.cancel_at_period_end
        ):
            raise errors.SubscriptionNotActive(
                "Only a trialing or active subscription that is not cancelled at period end "
                "pauses."
            )
        if sub.covered_period > sub.period_number:
            if _version_for(sub, sub.period_number + 1).price > 0:
                raise errors.PauseNotAllowed(
                    "The next period is paid for already: pause after it begins."
                )
            _uncover(sub, sub.period_number + 1)  # a free plan's, granted ahead: again later
        now = clock.now()
        ids = list(
            QuotaBatch.objects.filter(
                Q(subscription_grant__subscription=sub) | Q(rolled_into__subscription=sub),
                state__in=[BatchState.ACTIVE, BatchState.EXHAUSTED],
                expires_at__gt=now,
            ).values_list("pk", flat=True)
        )
        locked = ledger.lock_batches(QuotaBatch.objects.filter(pk__in=ids))
        QuotaBatch.objects.filter(
            pk__in=[b.pk for b in locked],
            state__in=[BatchState.ACTIVE, BatchState.EXHAUSTED],
        ).update(state=BatchState.PAUSED)
        sub.status = SubscriptionStatus.PAUSED
        sub.paused_at = now
        sub.next_due_at = None
        sub.save()
        signals.subscription_paused.send(sender=Subscription, subscription=sub)
    return sub


def subscription_unpause(*, subscription: Subscription) -> Subscription:
    """Unpause: everything the pause froze moves later by the time paused (batches valid and
    expiring later, periods ending later), and the subscription goes on where it stopped:
    billing periods and each allowance's resets are counted from their new ends. 409
    `subscription_not_active` unless paused."""
    with service_atomic():
        sub = _locked_current(subscription)
        if sub.status != SubscriptionStatus.PAUSED or sub.paused_at is None:
            raise errors.SubscriptionNotActive("Only a paused subscription unpauses.")
        now = clock.now()
        since = sub.paused_at
        shift = now - since
        ids = list(
            QuotaBatch.objects.filter(
                Q(subscription_grant__subscription=sub) | Q(rolled_into__subscription=sub),
                state=BatchState.PAUSED,
            ).values_list("pk", flat=True)
        )
        frozen = ledger.lock_batches(QuotaBatch.objects.filter(pk__in=ids))
        for batch in frozen:
            expires_at = batch.expires_at + shift if batch.expires_at is not None else None
            QuotaBatch.objects.filter(pk=batch.pk).update(
                valid_from=batch.valid_from + shift if batch.valid_from > since
                else batch.valid_from,
                expires_at=expires_at,
                state=BatchState.ACTIVE if batch.remaining > 0 else BatchState.EXHAUSTED,
            )
            if expires_at is not None:
                note_sweep_due(expires_at)
        # Row by row with the new times computed here: `timestamptz + interval` is a STABLE
        # function, which Citus refuses over a column in an UPDATE of a distributed table.
        grants = SubscriptionGrant.objects.filter(subscription=sub, period_end__gt=since)
        for pk, start, end in grants.values_list("pk", "period_start", "period_end"):
            SubscriptionGrant.objects.filter(pk=pk).update(
                period_start=start + shift if start > since else start, period_end=end + shift
            )
        sub.current_period_end += shift
        sub.covered_until += shift
        if sub.trial_end is not None and sub.trial_end > since:
            sub.trial_end += shift
        if sub.allowance_until is not None and sub.allowance_until > since:
            sub.allowance_until += shift
        # Billing goes on from the current period's new end, each allowance from the end of
        # its last period written.
        sub.billing_anchor, sub.anchor_period = sub.current_period_end, sub.period_number + 1
        runs: dict[str, list[Any]] = {}
        for entitlement in _allowances(sub.version):
            last = (
                SubscriptionGrant.objects.filter(subscription=sub, entitlement=entitlement)
                .order_by("-period_index")
                .first()
            )
            if last is not None:
                runs[str(entitlement.pk)] = [last.period_end.isoformat(), last.period_index + 1]
        sub.allowance_runs = runs
        sub.status = (
            SubscriptionStatus.TRIALING if sub.period_number == 0 else SubscriptionStatus.ACTIVE
        )
        sub.paused_at = None
        _pre_renew(sub, now)
        _write_allowances(sub, now)
        _announce_renewal(sub, now)
        _schedule(sub)
        sub.save()
        signals.subscription_resumed.send(sender=Subscription, subscription=sub)
    return sub


def subscriptions_advance_due(
    *, limit: int = ADVANCE_CHUNK, after: tuple[datetime, Any] | None = None
) -> tuple[int, tuple[datetime, Any] | None]:
    """Advance up to `limit` subscriptions whose `next_due_at` has come, in (due time, id)
    order after `after`; how many were looked at, and where to go on from.

    One transaction per subscription, locking its customer first and then the subscription
    (skipped if another sweep holds it), the order a merge locks them in. A subscription whose
    step fails is logged and left for the next run; the others, and the rest of the sweep, go on
    (past it: the cursor moves on, so a failing subscription is not tried again in this run).
    """
    now = clock.now()
    due_now = Subscription.objects.filter(next_due_at__lte=now)
    if after is not None:
        due_now = due_now.filter(
            Q(next_due_at__gt=after[0]) | Q(next_due_at=after[0], pk__gt=after[1])
        )
    due = list(
        due_now.order_by("next_due_at", "pk").values_list("pk", "customer_id", "next_due_at")[
            :limit
        ]
    )
    for pk, customer_id, _due_at in due:
        try:
            with transaction.atomic():
                acting = ledger.lock_customer_row(customer_id)
                sub = (
                    Subscription.objects.select_for_update(skip_locked=True, of=("self",))
                    .filter(pk=pk, next_due_at__lte=now)
                    .select_related("version", "plan", "scheduled_version")
                    .first()
                )
                if sub is None:
                    continue  # another sweep has it, or has done it
                if acting != sub.customer_id:  # merged meanwhile: rights go to the survivor
                    sub.customer_id = acting
                _advance(sub, now)
        except Exception:
            logger.exception("advancing subscription %s failed", pk)
    if not due:
        return 0, after
    last_pk, _customer, last_due = due[-1]
    assert last_due is not None  # filtered on next_due_at <= now
    return len(due), (last_due, last_pk)


def subscriptions_advance_all(*, chunk: int = ADVANCE_CHUNK) -> int:
    """Advance every subscription due now, `chunk` at a time; how many were looked at. Each is
    looked at once: one that fails does not hold up, or loop, the run."""
    looked, after = 0, None
    with run_scope(), sweep_due_deferred():
        while True:
            done, after = subscriptions_advance_due(limit=chunk, after=after)
            looked += done
            if done < chunk:
                return looked
