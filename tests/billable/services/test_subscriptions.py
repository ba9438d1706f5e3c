"""Subscriptions: periods, access, allowances that reset once per boundary, rollover, renewal of
free plans, past due and expiry, cancellation, all on the controllable clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from billable import clock, errors, signals
from billable.models import (
    Customer,
    LedgerEntry,
    Order,
    Plan,
    QuotaBatch,
    Subscription,
    SubscriptionGrant,
)
from billable.selectors import balance_get, ledger_verify
from billable.services import ledger
from billable.services.customers import customer_erase
from billable.services.merge import customer_merge
from billable.services.orders import order_confirm, order_refund
from billable.services.plans import EntitlementSpec, Terms, plan_create, plan_version_retire
from billable.services.quota import quota_consume
from billable.services.subscriptions import (
    subscription_cancel,
    subscription_change,
    subscription_create,
    subscription_pause,
    subscription_renewal_order,
    subscription_resume,
    subscription_unpause,
    subscriptions_advance_all,
)
from billable.services.sweep import tenant_sweep
from billable.services.trials import trial_grant

START = datetime(2026, 1, 31, 12, 0, tzinfo=UTC)
Catalog = dict[str, Any]


def _plan(key: str, *, price: str = "10", unit: str = "months", trial_days: int = 0,
          amount: int = 100, reset_unit: str | None = None, cap: int = 0) -> Plan:
    return plan_create(
        key=key, name=key,
        terms=Terms(
            interval_unit=unit, interval_count=1, price=Decimal(price), currency="USD",
            trial_days=trial_days,
            entitlements=(
                EntitlementSpec("allowance", product="reports", amount=amount,
                                reset_unit=reset_unit, rollover_cap=cap),
                EntitlementSpec("access", product="pro"),
            ),
        ),
    )


def _at(when: datetime) -> int:
    """Run the sweep's subscription step at `when`; how many it advanced."""
    with clock.frozen(when):
        return subscriptions_advance_all()


def _reports(customer: Customer, when: datetime) -> int | None:
    with clock.frozen(when):
        return balance_get(customer=customer, feature="report_generation").remaining


def _access(customer: Customer, when: datetime) -> bool:
    with clock.frozen(when):
        return balance_get(customer=customer, feature="priority_support").can_use


@pytest.fixture
def frozen_start() -> Any:
    with clock.frozen(START):
        yield START


@pytest.mark.django_db
def test_annual_plan_resets_monthly_once_per_boundary(
    catalog: Catalog, alice: Customer, frozen_start: datetime
) -> None:
    plan = _plan("annual", unit="years", reset_unit="months")
    sub = subscription_create(customer=alice, plan=plan)
    assert sub.status == "active" and sub.current_period_end == datetime(2027, 1, 31, 12,
                                                                             tzinfo=UTC)
    assert _reports(alice, START) == 100 and _access(alice, START)
    with clock.frozen(START):
        quota_consume(customer=alice, feature="report_generation", amount=30)
    # Jan 31 + 1 month is Feb 28; the next boundary is Mar 31 again (from the anchor).
    feb = datetime(2026, 2, 28, 12, tzinfo=UTC)
    assert _reports(alice, feb - timedelta(seconds=1)) == 70
    # Written ahead of the boundary, so a consume at the boundary instant finds the new period.
    assert _at(feb - timedelta(minutes=30)) == 1
    assert _reports(alice, feb) == 100
    with clock.frozen(feb):
        quota_consume(customer=alice, feature="report_generation", amount=1)
    # Two sweeps at the same time write nothing twice.
    _at(feb + timedelta(minutes=1))
    _at(feb + timedelta(minutes=1))
    starts = list(
        SubscriptionGrant.objects.filter(
            subscription=sub, entitlement__entitlement_type="allowance"
        ).values_list("period_start", flat=True)
    )
    assert starts == [START, feb]
    assert _reports(alice, feb + timedelta(days=1)) == 99
    assert ledger_verify().drifts == []


@pytest.mark.django_db
def test_an_unpaid_period_grants_nothing_and_bonuses_are_never_touched(
    catalog: Catalog, alice: Customer, frozen_start: datetime
) -> None:
    plan = _plan("roll", cap=30, amount=100)
    sub = subscription_create(customer=alice, plan=plan, trial=False)
    with clock.frozen(START):
        bonus = ledger.batch_create(
            customer_id=alice.pk, product_id=catalog["REPORTS"].pk, product_type="quantity",
            units=5, valid_from=START, expires_at=None, source="bonus", action_type="grant.bonus",
        )
        quota_consume(customer=alice, feature="report_generation", amount=90)
    # Soonest expiry first: the allowance went before the bonus.
    assert QuotaBatch.objects.get(pk=bonus.pk).remaining == 5
    feb = datetime(2026, 2, 28, 12, tzinfo=UTC)
    _at(feb)
    sub.refresh_from_db()
    assert sub.status == "past_due"
    # No renewal: no next period, so nothing rolls over and nothing new is granted.
    assert not SubscriptionGrant.objects.filter(
        subscription=sub, period_index=1, entitlement__entitlement_type="allowance"
    ).exists()
    assert _reports(alice, feb) == 5
    assert QuotaBatch.objects.get(pk=bonus.pk).remaining == 5
    assert ledger_verify().drifts == []


@pytest.mark.django_db
def test_rollover_on_a_free_monthly_plan(
    catalog: Catalog, alice: Customer, frozen_start: datetime
) -> None:
    plan = _plan("free", price="0", cap=30, amount=100)
    sub = subscription_create(customer=alice, plan=plan)
    with clock.frozen(START):
        quota_consume(customer=alice, feature="report_generation", amount=60)
    feb = datetime(2026, 2, 28, 12, tzinfo=UTC)
    mar = datetime(2026, 3, 31, 12, tzinfo=UTC)
    _at(feb)
    sub.refresh_from_db()
    assert (sub.status, sub.current_period_start, sub.current_period_end) == ("active", feb, mar)
    # 40 unused, capped at 30, on top of the new 100.
    assert _reports(alice, feb) == 130
    assert _access(alice, feb + timedelta(days=1))
    with clock.frozen(feb + timedelta(days=1)):
        quota_consume(customer=alice, feature="report_generation", amount=10)
    _at(mar)
    # 120 unused (100 of the period and 20 carried in): the cap still holds.
    assert _reports(alice, mar) == 130
    _at(mar)
    assert _reports(alice, mar) == 130
    assert ledger_verify().drifts == []
    assert LedgerEntry.objects.filter(action_type="plan.rollover", direction="credit").count() == 2


@pytest.mark.django_db
def test_paid_period_ends_past_due_then_expired_after_grace(
    catalog: Catalog, alice: Customer, frozen_start: datetime
) -> None:
    plan = _plan("paid")
    sub = subscription_create(customer=alice, plan=plan)
    end = sub.current_period_end
    _at(end)
    sub.refresh_from_db()
    assert sub.status == "past_due" and sub.next_due_at == end + timedelta(days=3)
    assert not _access(alice, end) and _reports(alice, end) == 0
    _at(end + timedelta(days=2))
    sub.refresh_from_db()
    assert sub.status == "past_due"
    _at(end + timedelta(days=3))
    sub.refresh_from_db()
    assert (sub.status, sub.ended_at, sub.next_due_at) == ("expired", end + timedelta(days=3),
                                                          None)


@pytest.mark.django_db
def test_trial_then_past_due_for_a_paid_plan(
    catalog: Catalog, alice: Customer, frozen_start: datetime
) -> None:
    plan = _plan("trial", trial_days=14)
    sub = subscription_create(customer=alice, plan=plan)
    assert (sub.status, sub.trial_end) == ("trialing", START + timedelta(days=14))
    assert _access(alice, START + timedelta(days=13))
    _at(START + timedelta(days=14))
    sub.refresh_from_db()
    assert sub.status == "past_due"
    without = subscription_create(customer=Customer.objects.create(), plan=_plan("t2",
                                  trial_days=5), trial=False)
    assert without.status == "active" and without.trial_end is None


@pytest.mark.django_db
def test_cancel_at_period_end_and_resume(
    catalog: Catalog, alice: Customer, frozen_start: datetime
) -> None:
    plan = _plan("monthly", unit="months", reset_unit="years")
    sub = subscription_create(customer=alice, plan=plan)
    sub = subscription_cancel(subscription=sub)
    assert sub.cancel_at_period_end and sub.status == "active"
    sub = subscription_resume(subscription=sub)
    assert not sub.cancel_at_period_end
    with pytest.raises(errors.SubscriptionNotActive):
        subscription_resume(subscription=sub)
    subscription_cancel(subscription=sub)
    end = sub.current_period_end
    _at(end)
    sub.refresh_from_db()
    assert (sub.status, sub.ended_at) == ("cancelled", end)
    # The yearly allowance outlived the month paid for: it is revoked at the end.
    assert _reports(alice, end) == 0
    assert ledger_verify().drifts == []
    with pytest.raises(errors.SubscriptionNotActive):
        subscription_cancel(subscription=sub)
    # Ended: the customer may subscribe again.
    with clock.frozen(end):
        again = subscription_create(customer=alice, plan=plan)
    assert again.status == "active"


@pytest.mark.django_db
def test_one_live_subscription_per_plan_and_retired_versions(
    catalog: Catalog, alice: Customer, frozen_start: datetime
) -> None:
    plan = _plan("solo")
    subscription_create(customer=alice, plan=plan)
    with pytest.raises(errors.SubscriptionExists):
        subscription_create(customer=alice, plan=plan)
    other = _plan("other")
    plan_version_retire(version=other.versions.get())
    with pytest.raises(errors.PlanVersionRetired):
        subscription_create(customer=alice, plan=other)
    assert Subscription.objects.filter(customer=alice).count() == 1


@pytest.mark.django_db
def test_a_free_plan_renews_ahead_and_a_late_cancel_takes_it_back(
    catalog: Catalog, alice: Customer, frozen_start: datetime
) -> None:
    plan = _plan("free2", price="0", amount=5)
    sub = subscription_create(customer=alice, plan=plan)
    feb = datetime(2026, 2, 28, 12, tzinfo=UTC)
    # The sweep half an hour before the end grants the next period, valid from the boundary.
    _at(feb - timedelta(minutes=30))
    sub.refresh_from_db()
    assert (sub.status, sub.current_period_end) == ("active", feb)
    assert sub.covered_until == datetime(2026, 3, 31, 12, tzinfo=UTC)
    # At the boundary instant, before any sweep: access and the new allowance are there.
    assert _access(alice, feb) and _reports(alice, feb) == 5
    # Cancelled in the last half hour: at the end, what was granted beyond it is revoked.
    with clock.frozen(feb - timedelta(minutes=10)):
        subscription_cancel(subscription=sub)
    _at(feb)
    sub.refresh_from_db()
    assert (sub.status, sub.ended_at) == ("cancelled", feb)
    assert not _access(alice, feb) and _reports(alice, feb) == 0
    assert ledger_verify().drifts == []


@pytest.mark.django_db
def test_a_merge_moves_subscriptions_unless_both_hold_the_plan(
    catalog: Catalog, alice: Customer, frozen_start: datetime
) -> None:
    plan, other = _plan("m1"), _plan("m2")
    bob, carol = Customer.objects.create(), Customer.objects.create()
    subscription_create(customer=alice, plan=plan)
    subscription_create(customer=bob, plan=plan)
    moved = subscription_create(customer=carol, plan=other)
    with pytest.raises(errors.SubscriptionExists):
        customer_merge(target=alice, source=bob)
    assert Subscription.objects.filter(customer=bob).count() == 1
    customer_merge(target=alice, source=carol)
    moved.refresh_from_db()
    assert moved.customer_id == alice.pk
    # The moved subscription's rights are the survivor's: its next periods are granted to it.
    _at(moved.current_period_end - timedelta(minutes=30))
    assert _reports(alice, START) == 200


@pytest.mark.django_db
def test_an_ended_subscription_keeps_no_units_rolled_or_held(
    catalog: Catalog, alice: Customer, frozen_start: datetime
) -> None:
    # A free plan carrying everything over, cancelled in the last half hour after its next
    # period was granted: at the end nothing of it stays usable, rolled-over units included.
    plan = _plan("keep", price="0", amount=10, cap=10)
    sub = subscription_create(customer=alice, plan=plan)
    feb = datetime(2026, 2, 28, 12, tzinfo=UTC)
    _at(feb - timedelta(minutes=30))
    with clock.frozen(feb - timedelta(minutes=10)):
        subscription_cancel(subscription=sub)
    _at(feb)
    assert _reports(alice, feb) == 0
    assert not LedgerEntry.objects.filter(action_type="plan.rollover").exists()
    assert ledger_verify().drifts == []


@pytest.mark.django_db
def test_past_due_ends_the_allowance_with_the_period_paid_for(
    catalog: Catalog, alice: Customer, frozen_start: datetime
) -> None:
    # A paid plan with a 7-day trial and a monthly allowance anchored at the trial's start:
    # unpaid after the trial, the rest of that month's allowance is not usable.
    plan = _plan("trial-allowance", trial_days=7, amount=1000)
    subscription_create(customer=alice, plan=plan)
    trial_end = START + timedelta(days=7)
    assert _reports(alice, trial_end - timedelta(seconds=1)) == 1000
    _at(trial_end)
    assert _reports(alice, trial_end) == 0
    assert ledger_verify().drifts == []


@pytest.mark.django_db
def test_a_cancel_after_the_end_settles_the_ended_period_first(
    catalog: Catalog, alice: Customer, frozen_start: datetime
) -> None:
    plan = _plan("late", price="0", amount=5)
    sub = subscription_create(customer=alice, plan=plan)
    feb = datetime(2026, 2, 28, 12, tzinfo=UTC)
    _at(feb - timedelta(minutes=30))  # next period granted ahead
    with clock.frozen(feb + timedelta(seconds=20)):  # before any sweep after the end
        sub = subscription_cancel(subscription=sub)
    # The period that had begun is the one cancelled at its end, not the one that ended.
    assert (sub.status, sub.current_period_start, sub.cancel_at_period_end) == (
        "active", feb, True,
    )
    assert _access(alice, feb + timedelta(days=1)) and _reports(alice, feb + timedelta(days=1)) == 5


# --- Renewal by order

@pytest.fixture
def renewals_due() -> Any:
    """The orders `subscription.renewal_due` announced, in order."""
    seen: list[Order] = []

    def receive(sender: Any, subscription: Subscription, order: Order, **kw: Any) -> None:
        seen.append(order)

    signals.subscription_renewal_due.connect(receive, dispatch_uid="test-renewal-due")
    yield seen
    signals.subscription_renewal_due.disconnect(dispatch_uid="test-renewal-due")


def _confirm(order: Order, when: datetime) -> Order:
    with clock.frozen(when):
        return order_confirm(order=order)


@pytest.mark.django_db
def test_a_paid_plan_announces_its_renewal_once_and_the_paid_order_starts_the_next_period(
    catalog: Catalog, alice: Customer, frozen_start: datetime, renewals_due: list[Order]
) -> None:
    sub = subscription_create(customer=alice, plan=_plan("paid"))
    end = sub.current_period_end  # Feb 28, 12:00
    notice = end - timedelta(days=3)
    assert sub.next_due_at == notice
    _at(notice - timedelta(seconds=1))
    assert renewals_due == []
    _at(notice)
    _at(notice + timedelta(minutes=5))
    assert len(renewals_due) == 1
    order = Order.objects.get(pk=renewals_due[0].pk)
    assert (order.status, order.total, order.currency, order.period_number) == (
        "pending", Decimal("10"), "USD", 2
    )
    assert order.subscription_id == sub.pk
    sub.refresh_from_db()
    assert (sub.renewal_notified_period, sub.covered_until) == (2, end)

    _confirm(order, notice + timedelta(hours=1))
    sub.refresh_from_db()
    second_end = datetime(2026, 3, 31, 12, 0, tzinfo=UTC)
    assert (sub.covered_period, sub.covered_until, sub.status) == (2, second_end, "active")
    # Paid ahead: nothing lapses at the boundary, and no second announcement comes. The next
    # allowance is written by the sweep an hour ahead, as for any period.
    assert _access(alice, end)
    assert sub.next_due_at == end - timedelta(hours=1)
    _at(end - timedelta(hours=1))
    assert _reports(alice, end) == 100
    _at(end)
    sub.refresh_from_db()
    assert (sub.period_number, sub.current_period_start, sub.current_period_end) == (
        2, end, second_end
    )
    assert sub.next_due_at == second_end - timedelta(days=3)
    assert len(renewals_due) == 1
    _at(second_end - timedelta(days=3))
    assert [o.period_number for o in renewals_due] == [2, 3]
    assert ledger_verify().ok


@pytest.mark.django_db
def test_a_late_payment_brings_a_past_due_subscription_back(
    catalog: Catalog, alice: Customer, frozen_start: datetime, renewals_due: list[Order]
) -> None:
    sub = subscription_create(customer=alice, plan=_plan("paid"))
    end = sub.current_period_end
    _at(end)
    sub.refresh_from_db()
    assert sub.status == "past_due" and not _access(alice, end)
    (order,) = renewals_due
    late = end + timedelta(days=1, hours=3)
    _confirm(order, late)
    sub.refresh_from_db()
    # The period paid for starts at the payment, and the allowances' resets with it.
    assert (sub.status, sub.period_number, sub.current_period_start) == ("active", 2, late)
    assert sub.current_period_end == datetime(2026, 4, 1, 15, 0, tzinfo=UTC)
    assert _access(alice, late) and _reports(alice, late) == 100
    assert not _access(alice, late - timedelta(seconds=1))
    assert sub.next_due_at == datetime(2026, 3, 29, 15, 0, tzinfo=UTC)  # the next notice
    _at(datetime(2026, 4, 1, 14, 0, tzinfo=UTC))
    assert SubscriptionGrant.objects.filter(subscription=sub, period_start=late).count() == 2
    assert ledger_verify().ok


@pytest.mark.django_db
def test_a_renewal_confirmed_after_expiry_is_refused_and_its_order_was_withdrawn(
    catalog: Catalog, alice: Customer, frozen_start: datetime, renewals_due: list[Order]
) -> None:
    sub = subscription_create(customer=alice, plan=_plan("paid"))
    end = sub.current_period_end
    _at(end)
    (order,) = renewals_due
    # The confirmation arrives after the grace days, before the sweep ran: the subscription is
    # settled first and has expired, so the confirmation is refused and nothing changes.
    with pytest.raises(errors.SubscriptionNotActive):
        _confirm(order, end + timedelta(days=4))
    order.refresh_from_db()
    sub.refresh_from_db()
    assert (sub.status, order.status) == ("past_due", "pending")
    _at(end + timedelta(days=4))
    order.refresh_from_db()
    sub.refresh_from_db()
    assert (sub.status, order.status) == ("expired", "cancelled")
    with pytest.raises(errors.InvalidOrderState):
        _confirm(order, end + timedelta(days=5))


@pytest.mark.django_db
def test_cancel_withdraws_the_renewal_order_and_resume_announces_it_again(
    catalog: Catalog, alice: Customer, frozen_start: datetime, renewals_due: list[Order]
) -> None:
    sub = subscription_create(customer=alice, plan=_plan("paid"))
    notice = sub.current_period_end - timedelta(days=3)
    _at(notice)
    (first,) = renewals_due
    with clock.frozen(notice + timedelta(hours=1)):
        subscription_cancel(subscription=sub)
    first.refresh_from_db()
    assert (first.status, first.reason) == ("cancelled", "subscription cancelled at period end")
    with clock.frozen(notice + timedelta(hours=2)):
        with pytest.raises(errors.SubscriptionNotActive):
            subscription_renewal_order(subscription=sub)
        subscription_resume(subscription=sub)
    assert len(renewals_due) == 2
    second = renewals_due[1]
    assert (second.status, second.period_number) == ("pending", 2) and second.pk != first.pk


@pytest.mark.django_db
def test_refunding_a_renewal_takes_back_a_period_not_begun_and_ends_a_begun_one(
    catalog: Catalog, alice: Customer, frozen_start: datetime, renewals_due: list[Order]
) -> None:
    sub = subscription_create(customer=alice, plan=_plan("paid"))
    end = sub.current_period_end
    notice = end - timedelta(days=3)
    _at(notice)
    (order,) = renewals_due
    _confirm(order, notice)
    with clock.frozen(notice + timedelta(hours=1)):
        order_refund(order=order, reason="changed mind")
    sub.refresh_from_db()
    assert (sub.covered_period, sub.covered_until, sub.status) == (1, end, "active")
    assert sub.cancel_at_period_end  # it will not renew unless resumed
    assert not _access(alice, end)
    # Resumed, it is announced again, and paying grants the period anew.
    with clock.frozen(notice + timedelta(hours=2)):
        subscription_resume(subscription=sub)
        again, created = subscription_renewal_order(subscription=sub)
    assert not created and again.period_number == 2 and again.pk == renewals_due[-1].pk
    _confirm(again, notice + timedelta(hours=3))
    _at(end)
    assert _access(alice, end) and _reports(alice, end) == 100
    # A refund once the period has begun ends the subscription then.
    refund_at = end + timedelta(days=1)
    with clock.frozen(refund_at):
        order_refund(order=again)
    sub.refresh_from_db()
    assert (sub.status, sub.ended_at) == ("cancelled", refund_at)
    assert not _access(alice, refund_at) and _reports(alice, refund_at) == 0
    assert ledger_verify().ok


@pytest.mark.django_db
def test_a_renewal_order_on_request(
    catalog: Catalog, alice: Customer, frozen_start: datetime, renewals_due: list[Order]
) -> None:
    free = subscription_create(customer=alice, plan=_plan("free", price="0"))
    with pytest.raises(errors.RenewalNotNeeded):
        subscription_renewal_order(subscription=free)
    sub = subscription_create(customer=alice, plan=_plan("paid"))
    order, created = subscription_renewal_order(subscription=sub)
    assert created and (order.period_number, order.status) == (2, "pending")
    again, created_again = subscription_renewal_order(subscription=sub)
    assert (again.pk, created_again) == (order.pk, False)
    # The announcement later finds it and sends nothing new.
    _at(sub.current_period_end - timedelta(days=3))
    assert renewals_due == []
    _confirm(order, START + timedelta(days=1))
    with pytest.raises(errors.RenewalNotNeeded):
        subscription_renewal_order(subscription=sub)
    assert Order.objects.filter(subscription=sub).count() == 1


@pytest.mark.django_db
def test_a_trials_allowance_ends_with_it_and_the_paid_periods_reset_on_their_own_dates(
    catalog: Catalog, alice: Customer, frozen_start: datetime, renewals_due: list[Order]
) -> None:
    sub = subscription_create(customer=alice, plan=_plan("trial", trial_days=14))
    trial_end = START + timedelta(days=14)  # Feb 14
    (trial,) = SubscriptionGrant.objects.filter(subscription=sub, entitlement__amount=100)
    assert (trial.period_start, trial.period_end) == (START, trial_end)
    # announced three days before the trial ends, paid, then the sweep an hour ahead
    _at(trial_end - timedelta(days=3))
    (order,) = renewals_due
    assert order.period_number == 1
    _confirm(order, trial_end - timedelta(days=2))
    _at(trial_end - timedelta(hours=1))
    starts = sorted(
        SubscriptionGrant.objects.filter(subscription=sub, entitlement__amount=100)
        .values_list("period_start", "period_end")
    )
    assert starts == [(START, trial_end), (trial_end, datetime(2026, 3, 14, 12, tzinfo=UTC))]
    assert _reports(alice, trial_end - timedelta(seconds=1)) == 100  # the trial's own units
    assert _reports(alice, trial_end) == 100  # not 200: the trial's do not overlap the period's
    _at(trial_end)
    sub.refresh_from_db()
    assert (sub.status, sub.period_number, sub.current_period_end) == (
        "active", 1, datetime(2026, 3, 14, 12, tzinfo=UTC)
    )
    assert ledger_verify().ok


# --- The trial guard


@pytest.mark.django_db
def test_a_plan_trial_is_one_per_person_like_trial_grants(
    catalog: Catalog, alice: Customer, frozen_start: datetime
) -> None:
    first = _plan("first", trial_days=7)
    second = _plan("second", trial_days=7)
    subscription_create(customer=alice, plan=first, identities={"email": "Al.Ice@gmail.com"})
    # the same customer, or another one with the same (normalised) e-mail, gets no second trial
    with pytest.raises(errors.TrialAlreadyUsed):
        subscription_create(customer=alice, plan=second)
    bob = Customer.objects.create()
    with pytest.raises(errors.TrialAlreadyUsed):
        subscription_create(customer=bob, plan=second, identities={"email": "alice@gmail.com"})
    assert not Subscription.objects.filter(customer=bob).exists()
    # without a trial (paid first), or a plan with none, they subscribe
    paid = subscription_create(customer=bob, plan=second, trial=False,
                               identities={"email": "alice@gmail.com"})
    assert paid.status == "active"
    # and a plan trial counts against trial grants too
    carol = Customer.objects.create()
    subscription_create(customer=carol, plan=first)
    with pytest.raises(errors.TrialAlreadyUsed):
        trial_grant(customer=carol, offer=catalog["REPORTS_10"])


@pytest.mark.django_db
def test_a_trial_grant_counts_against_a_plan_trial(
    catalog: Catalog, alice: Customer, frozen_start: datetime
) -> None:
    trial_grant(customer=alice, offer=catalog["REPORTS_10"], identities={"telegram": 42})
    dave = Customer.objects.create()
    with pytest.raises(errors.TrialAlreadyUsed):
        subscription_create(customer=dave, plan=_plan("t", trial_days=3),
                            identities={"telegram": "42"})


# --- Plan changes


def _tier(key: str, price: str, amount: int, *, access: bool = False, unit: str = "months",
          upgrade: str = "prorated") -> Plan:
    entitlements = [EntitlementSpec("allowance", product="reports", amount=amount)]
    if access:
        entitlements.append(EntitlementSpec("access", product="pro"))
    return plan_create(
        key=key, name=key, upgrade_allowance=upgrade,
        terms=Terms(interval_unit=unit, interval_count=1, price=Decimal(price), currency="USD",
                    trial_days=0, entitlements=tuple(entitlements)),
    )


@pytest.fixture
def changes() -> Any:
    seen: list[tuple[str, str, datetime]] = []

    def receive(sender: Any, subscription: Subscription, previous_version: Any, at: datetime,
                **kw: Any) -> None:
        seen.append((previous_version.plan.key, subscription.plan.key, at))

    signals.subscription_plan_changed.connect(receive, dispatch_uid="test-plan-changed")
    yield seen
    signals.subscription_plan_changed.disconnect(dispatch_uid="test-plan-changed")


@pytest.mark.django_db
@pytest.mark.parametrize(("upgrade", "granted"), [("prorated", 150 - 40), ("full", 300 - 40)])
def test_an_upgrade_now_grants_the_new_allowance_less_what_was_used(
    catalog: Catalog, alice: Customer, frozen_start: datetime, changes: list[Any],
    upgrade: str, granted: int,
) -> None:
    basic = _tier("basic", "10", 100)
    pro = _tier("pro_tier", "30", 300, access=True, upgrade=upgrade)
    sub = subscription_create(customer=alice, plan=basic)  # Jan 31 to Feb 28: 28 days
    with clock.frozen(START + timedelta(days=1)):
        quota_consume(customer=alice, feature="report_generation", amount=40)
    halfway = START + timedelta(days=14)
    with clock.frozen(halfway):
        result = subscription_change(subscription=sub, plan=pro)
    assert (result.at, result.amount_due) == ("now", Decimal("10.00"))
    sub.refresh_from_db()
    assert (sub.plan_id, sub.scheduled_version_id) == (pro.pk, None)
    assert changes == [("BASIC", "PRO_TIER", halfway)]
    assert _reports(alice, halfway) == granted and _access(alice, halfway)
    assert not _access(alice, halfway - timedelta(seconds=1))
    # the old allowance's 60 left were revoked, once; the ledger holds
    revoked = LedgerEntry.objects.filter(action_type="plan.changed", direction="debit")
    assert sum(entry.amount for entry in revoked) == 60
    assert ledger_verify().ok
    # the renewal is announced at the new price
    _at(sub.current_period_end - timedelta(days=3))
    order = Order.objects.get(subscription=sub, status="pending")
    assert (order.total, order.metadata["plan"]) == (Decimal("30"), "PRO_TIER")


@pytest.mark.django_db
def test_a_downgrade_takes_effect_at_period_end_and_renews_at_its_price(
    catalog: Catalog, alice: Customer, frozen_start: datetime, changes: list[Any],
    renewals_due: list[Order],
) -> None:
    basic = _tier("basic", "10", 100)
    pro = _tier("pro_tier", "30", 300, access=True)
    sub = subscription_create(customer=alice, plan=pro)
    end = sub.current_period_end
    with clock.frozen(START + timedelta(days=2)):
        result = subscription_change(subscription=sub, plan=basic)
    assert (result.at, result.amount_due) == ("period_end", None)
    sub.refresh_from_db()
    assert sub.scheduled_version.plan_id == basic.pk and sub.plan_id == pro.pk
    # a customer cannot subscribe to the plan it is changing to
    with pytest.raises(errors.SubscriptionExists):
        subscription_create(customer=alice, plan=basic)
    assert _reports(alice, START + timedelta(days=2)) == 300 and changes == []
    _at(end - timedelta(days=3))
    (order,) = renewals_due
    assert (order.total, order.metadata["plan"]) == (Decimal("10"), "BASIC")
    _confirm(order, end - timedelta(days=2))
    _at(end - timedelta(hours=1))
    sub.refresh_from_db()
    assert (sub.plan_id, sub.scheduled_version_id) == (basic.pk, None)
    assert changes == [("PRO_TIER", "BASIC", end)]
    assert _access(alice, end - timedelta(seconds=1)) and not _access(alice, end)
    assert _reports(alice, end) == 100
    _at(end)
    sub.refresh_from_db()
    assert (sub.status, sub.period_number, sub.current_period_start) == ("active", 2, end)
    assert ledger_verify().ok


@pytest.mark.django_db
def test_a_scheduled_change_is_withdrawn_by_changing_back(
    catalog: Catalog, alice: Customer, frozen_start: datetime, renewals_due: list[Order],
) -> None:
    basic = _tier("basic", "10", 100)
    pro = _tier("pro_tier", "30", 300)
    sub = subscription_create(customer=alice, plan=pro)
    notice = sub.current_period_end - timedelta(days=3)
    _at(notice)
    with clock.frozen(notice + timedelta(minutes=1)):
        subscription_change(subscription=sub, plan=basic)
    # the renewal announced at the old price is withdrawn, and announced again at the new one
    assert [o.total for o in renewals_due] == [Decimal("30"), Decimal("10")]
    with clock.frozen(notice + timedelta(hours=1)):
        back = subscription_change(subscription=sub, plan=pro)
    assert back.subscription.scheduled_version is None
    assert [o.total for o in renewals_due] == [Decimal("30"), Decimal("10"), Decimal("30")]
    statuses = [Order.objects.get(pk=o.pk).status for o in renewals_due]
    assert statuses == ["cancelled", "cancelled", "pending"]


@pytest.mark.django_db
def test_plan_change_refusals(catalog: Catalog, alice: Customer, frozen_start: datetime) -> None:
    basic = _tier("basic", "10", 100)
    pro = _tier("pro_tier", "30", 300)
    yearly = _tier("yearly", "100", 1000, unit="years")
    sub = subscription_create(customer=alice, plan=basic)
    with pytest.raises(errors.PlanChangeNotAllowed):
        subscription_change(subscription=sub, plan=basic)  # already on it
    with pytest.raises(errors.PlanChangeNotAllowed):
        subscription_change(subscription=sub, plan=yearly, at="now")  # another interval
    subscription_create(customer=alice, plan=pro)
    with pytest.raises(errors.SubscriptionExists):
        subscription_change(subscription=sub, plan=pro)
    _at(sub.current_period_end)  # unpaid: past due
    with pytest.raises(errors.SubscriptionNotActive):
        subscription_change(subscription=sub, plan=yearly)


@pytest.mark.django_db
def test_refunds_of_other_periods_and_a_cancel_after_paying_ahead(
    catalog: Catalog, alice: Customer, frozen_start: datetime, renewals_due: list[Order]
) -> None:
    sub = subscription_create(customer=alice, plan=_plan("paid"))
    end = sub.current_period_end  # Feb 28
    _at(end - timedelta(days=3))
    _confirm(renewals_due[0], end - timedelta(days=3))  # period 2, to Mar 31
    _at(end)
    second_end = datetime(2026, 3, 31, 12, 0, tzinfo=UTC)
    _at(second_end - timedelta(days=3))
    third = renewals_due[1]
    _confirm(third, second_end - timedelta(days=3))  # period 3, paid ahead
    # the current period cannot be refunded while a later one is paid
    with clock.frozen(second_end - timedelta(days=2)), pytest.raises(errors.RenewalOutOfOrder):
        order_refund(order=renewals_due[0])
    # cancelled at period end after paying ahead: it ends after the period paid for
    with clock.frozen(second_end - timedelta(days=2)):
        subscription_cancel(subscription=sub)
    _at(second_end)
    sub.refresh_from_db()
    assert (sub.status, sub.period_number) == ("active", 3)
    assert _access(alice, second_end + timedelta(days=1))
    third_end = datetime(2026, 4, 30, 12, 0, tzinfo=UTC)
    _at(third_end)
    sub.refresh_from_db()
    assert (sub.status, sub.ended_at) == ("cancelled", third_end)
    assert Order.objects.filter(subscription=sub, status="pending").count() == 0
    assert ledger_verify().ok


@pytest.mark.django_db
def test_refunding_an_ended_period_takes_nothing_back(
    catalog: Catalog, alice: Customer, frozen_start: datetime, renewals_due: list[Order]
) -> None:
    sub = subscription_create(customer=alice, plan=_plan("paid"))
    end = sub.current_period_end
    _at(end - timedelta(days=3))
    _confirm(renewals_due[0], end - timedelta(days=3))  # period 2
    second_end = datetime(2026, 3, 31, 12, 0, tzinfo=UTC)
    _at(second_end - timedelta(days=3))
    _confirm(renewals_due[1], second_end - timedelta(days=3))  # period 3
    _at(second_end)
    with clock.frozen(second_end + timedelta(days=1)):
        order_refund(order=renewals_due[0])  # period 2 has ended
    sub.refresh_from_db()
    assert (sub.status, sub.period_number, sub.cancel_at_period_end) == ("active", 3, False)
    assert _access(alice, second_end + timedelta(days=1))


# --- Pause and unpause


@pytest.mark.django_db
def test_a_pause_freezes_the_rights_and_an_unpause_gives_back_the_time_left(
    catalog: Catalog, alice: Customer, frozen_start: datetime, renewals_due: list[Order]
) -> None:
    sub = subscription_create(customer=alice, plan=_plan("paid"))  # to Feb 28, 12:00
    with clock.frozen(START + timedelta(days=1)):
        quota_consume(customer=alice, feature="report_generation", amount=30)
    paused_at = START + timedelta(days=10)
    with clock.frozen(paused_at):
        paused = subscription_pause(subscription=sub)
    assert (paused.status, paused.paused_at, paused.next_due_at) == ("paused", paused_at, None)
    assert _reports(alice, paused_at) == 0 and not _access(alice, paused_at)
    # the period's end passes: nothing expires, nothing falls due
    later = START + timedelta(days=35)
    _at(later)
    with clock.frozen(later):
        tenant_sweep()
    sub.refresh_from_db()
    assert sub.status == "paused" and renewals_due == []
    assert not QuotaBatch.objects.filter(customer=alice, state="expired").exists()
    # unpaused 25 days later: the 18 days that were left, and the 70 units
    with clock.frozen(later):
        back = subscription_unpause(subscription=sub)
    new_end = datetime(2026, 2, 28, 12, 0, tzinfo=UTC) + timedelta(days=25)
    assert (back.status, back.current_period_end, back.paused_at) == ("active", new_end, None)
    assert _reports(alice, later) == 70 and _access(alice, later)
    assert _reports(alice, new_end - timedelta(seconds=1)) == 70
    assert not _access(alice, new_end)
    assert back.next_due_at == new_end - timedelta(days=3)
    _at(new_end - timedelta(days=3))
    (order,) = renewals_due
    _confirm(order, new_end - timedelta(days=2))
    _at(new_end - timedelta(hours=1))
    assert _reports(alice, new_end) == 100 and _access(alice, new_end)
    _at(new_end)
    sub.refresh_from_db()
    assert (sub.period_number, sub.current_period_start) == (2, new_end)
    assert sub.current_period_end == new_end.replace(month=4)
    assert ledger_verify().ok


@pytest.mark.django_db
def test_a_daily_allowance_goes_on_from_where_its_day_stopped(
    catalog: Catalog, alice: Customer, frozen_start: datetime
) -> None:
    sub = subscription_create(customer=alice, plan=_plan("daily", price="0", amount=5,
                                                        reset_unit="days"))
    for day in (1, 2):
        _at(START + timedelta(days=day) - timedelta(hours=1))
        _at(START + timedelta(days=day))
    pause = START + timedelta(days=2, hours=6)  # 18 hours left of the day period
    with clock.frozen(pause):
        quota_consume(customer=alice, feature="report_generation", amount=2)
        subscription_pause(subscription=sub)
    resume = pause + timedelta(days=3)
    with clock.frozen(resume):
        subscription_unpause(subscription=sub)
    day_end = resume + timedelta(hours=18)
    assert _reports(alice, resume) == 3 and _reports(alice, day_end - timedelta(seconds=1)) == 3
    assert sub.__class__.objects.get(pk=sub.pk).next_due_at == day_end - timedelta(hours=1)
    _at(day_end - timedelta(hours=1))
    assert _reports(alice, day_end) == 5
    starts = sorted(SubscriptionGrant.objects.filter(subscription=sub)
                    .values_list("period_start", flat=True))
    assert starts[-1] == day_end
    assert ledger_verify().ok


@pytest.mark.django_db
def test_pause_refusals_and_a_cancel_while_paused(
    catalog: Catalog, alice: Customer, frozen_start: datetime, renewals_due: list[Order]
) -> None:
    sub = subscription_create(customer=alice, plan=_plan("paid"))
    end = sub.current_period_end
    _at(end - timedelta(days=3))
    _confirm(renewals_due[0], end - timedelta(days=3))
    with clock.frozen(end - timedelta(days=2)), pytest.raises(errors.PauseNotAllowed):
        subscription_pause(subscription=sub)  # the next period is paid for
    _at(end)
    with clock.frozen(end + timedelta(days=1)):
        subscription_pause(subscription=sub)
        with pytest.raises(errors.SubscriptionNotActive):
            subscription_pause(subscription=sub)
        with pytest.raises(errors.SubscriptionNotActive):
            subscription_renewal_order(subscription=sub)
        with pytest.raises(errors.SubscriptionNotActive):
            subscription_change(subscription=sub, plan=_plan("other"))
    # cancelled while paused: it ends at once, and nothing it froze comes back
    with clock.frozen(end + timedelta(days=40)):
        cancelled = subscription_cancel(subscription=sub)
    assert (cancelled.status, cancelled.paused_at) == ("cancelled", None)
    assert not QuotaBatch.objects.filter(customer=alice, state="paused").exists()
    assert _reports(alice, end + timedelta(days=40)) == 0
    with pytest.raises(errors.SubscriptionNotActive):
        subscription_unpause(subscription=sub)
    assert ledger_verify().ok


@pytest.mark.django_db
def test_two_upgrades_in_a_period_count_all_that_was_used_and_going_back_works(
    catalog: Catalog, alice: Customer, frozen_start: datetime
) -> None:
    basic = _tier("basic", "10", 100, access=True)
    plus = _tier("plus", "20", 1000, access=True, upgrade="full")
    top = _tier("top", "30", 1000, access=True, upgrade="full")
    sub = subscription_create(customer=alice, plan=basic)
    at = START + timedelta(days=1)
    with clock.frozen(at):
        quota_consume(customer=alice, feature="report_generation", amount=100)
        subscription_change(subscription=sub, plan=plus)
        assert _reports(alice, at) == 900
        quota_consume(customer=alice, feature="report_generation", amount=900)
        subscription_change(subscription=sub, plan=top)
    # 1,000 used of top's 1,000 this period: nothing more until it resets
    assert _reports(alice, at) == 0
    # back to the first plan in the same period, at once: its access comes back
    with clock.frozen(at + timedelta(hours=1)):
        result = subscription_change(subscription=sub, plan=plus, at="now")
    assert result.at == "now" and _access(alice, at + timedelta(hours=1))
    assert ledger_verify().ok


@pytest.mark.django_db
def test_a_downgrade_ends_an_allowance_that_outlives_the_period(
    catalog: Catalog, alice: Customer, frozen_start: datetime, renewals_due: list[Order]
) -> None:
    yearly_allowance = plan_create(
        key="big", name="big",
        terms=Terms(interval_unit="months", interval_count=1, price=Decimal("50"),
                    currency="USD", trial_days=0,
                    entitlements=(EntitlementSpec("allowance", product="reports", amount=1200,
                                                  reset_unit="years"),)),
    )
    small = _tier("small", "5", 10)
    sub = subscription_create(customer=alice, plan=yearly_allowance)
    end = sub.current_period_end
    with clock.frozen(START + timedelta(days=1)):
        subscription_change(subscription=sub, plan=small)
    _at(end - timedelta(days=3))
    _confirm(renewals_due[0], end - timedelta(days=3))
    _at(end - timedelta(hours=1))
    assert _reports(alice, end) == 10  # the 1,200 a year did not go on under the small plan


@pytest.mark.django_db
def test_scheduled_changes_keep_one_subscription_per_plan(
    catalog: Catalog, alice: Customer, frozen_start: datetime, renewals_due: list[Order]
) -> None:
    a, b, target = _tier("a", "30", 10), _tier("b", "30", 10), _tier("t", "5", 10)
    first = subscription_create(customer=alice, plan=a)
    second = subscription_create(customer=alice, plan=b)
    subscription_change(subscription=first, plan=target)  # at period end
    with pytest.raises(errors.SubscriptionExists):
        subscription_change(subscription=second, plan=target)
    # a paid next period under the scheduled plan is not thrown away by changing back
    _at(first.current_period_end - timedelta(days=3))
    (order,) = [o for o in renewals_due if o.subscription_id == first.pk]
    assert order.total == Decimal("5")
    _confirm(order, first.current_period_end - timedelta(days=2))
    with pytest.raises(errors.PlanChangeNotAllowed):
        subscription_change(subscription=first, plan=a)


@pytest.mark.django_db
@pytest.mark.timeout(60)
def test_a_subscription_that_fails_to_advance_holds_up_nothing(
    catalog: Catalog, frozen_start: datetime
) -> None:
    plan = _plan("free", price="0")
    subs = sorted(
        (subscription_create(customer=Customer.objects.create(), plan=plan) for _ in range(3)),
        key=lambda sub: str(sub.pk),
    )
    broken = subs[0]  # first in the sweep's order (same due time, then id)
    access = broken.version.entitlements.get(entitlement_type="access")
    end = broken.current_period_end
    # a stray row where the next period's access grant goes: advancing it fails
    SubscriptionGrant.objects.create(subscription=broken, entitlement=access, period_index=2,
                                     period_start=end, period_end=end + timedelta(days=1))
    with clock.frozen(end - timedelta(hours=1)):
        assert subscriptions_advance_all(chunk=1) == 3
    for sub in subs:
        sub.refresh_from_db()
    assert [sub.covered_until > end for sub in subs] == [False, True, True]
    assert subs[0].next_due_at == end - timedelta(hours=1)  # left for the next run


@pytest.mark.django_db
def test_erasing_a_customer_ends_its_subscriptions(
    catalog: Catalog, alice: Customer, frozen_start: datetime, renewals_due: list[Order]
) -> None:
    sub = subscription_create(customer=alice, plan=_plan("paid"), metadata={"email": "a@x.io"})
    _at(sub.current_period_end - timedelta(days=3))
    (order,) = renewals_due
    erased_at = sub.current_period_end - timedelta(days=2)
    with clock.frozen(erased_at):
        customer_erase(customer=alice)
    sub.refresh_from_db()
    order.refresh_from_db()
    assert (sub.status, sub.ended_at, sub.metadata) == ("cancelled", erased_at, {})
    assert order.status == "cancelled"
    assert not _access(alice, erased_at) and _reports(alice, erased_at) == 0
    _at(sub.current_period_end)  # nothing further happens to it
    sub.refresh_from_db()
    assert sub.status == "cancelled" and len(renewals_due) == 1
    assert ledger_verify().ok
