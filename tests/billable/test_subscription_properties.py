"""Stateful properties of subscriptions: random subscribes, consumes, top-ups, sweeps, renewals,
refunds, plan changes, pauses and cancellations under a controllable clock.

A hypothesis state machine drives the services in acme's schema. After every step: the ledger
verifies (each batch equals its credits minus its debits, none negative); no plan debit (a reset,
a rollover, an end, a change) ever touches a purchased or bonus batch; the allowance batches of
one subscription and product never overlap in time (each boundary resets once, and a change or a
trial's end never adds a second period on top of one); no rollover exceeds its cap; every balance
equals the sum of the usable quantity batches read from the rows; a subscription that is paused,
past due or ended leaves nothing of its plan usable; one in force has its access for the period
it is in. After every sweep, no subscription is due in the past. Each example runs in a
savepoint that is rolled back.
"""

from __future__ import annotations

import time
from collections import Counter
from datetime import datetime, timedelta
from decimal import Decimal
from itertools import pairwise
from typing import Any

import pytest
from django.db import transaction
from django.db.models import Q, Sum
from django.utils import timezone
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    rule,
    run_state_machine_as_test,
)

from billable import clock, errors, selectors
from billable.models import (
    Customer,
    LedgerEntry,
    Offer,
    Order,
    Plan,
    QuotaBatch,
    Subscription,
    SubscriptionGrant,
)
from billable.services import grants as grant_services
from billable.services import orders as order_services
from billable.services import quota as quota_services
from billable.services import subscriptions as subscription_services
from billable.services.catalog import ItemSpec, offer_create, product_create
from billable.services.plans import EntitlementSpec, Terms, plan_create
from billable.services.sweep import tenant_sweep
from tenants.selectors import citus_enabled
from tests.support.tenants import TenantFixture

# Refusals a rule may meet: the machine does not model every status rule, the invariants do.
REFUSALS = (
    errors.SubscriptionNotActive,
    errors.PlanChangeNotAllowed,
    errors.PauseNotAllowed,
    errors.SubscriptionExists,
    errors.RenewalOutOfOrder,
    errors.RenewalNotNeeded,
    errors.InvalidOrderState,
    errors.TrialAlreadyUsed,
    errors.QuotaExhausted,
    errors.InsufficientQuota,
)
PLAN_DEBITS = ("plan.rollover", "plan.ended", "plan.changed")
STEPS = [timedelta(minutes=30), timedelta(hours=6), timedelta(days=1), timedelta(days=3),
         timedelta(days=11), timedelta(days=31)]


def _plans() -> dict[str, Plan]:
    def make(key: str, unit: str, price: str, trial: int, upgrade: str,
             *entitlements: EntitlementSpec) -> Plan:
        return plan_create(
            key=key, name=key, upgrade_allowance=upgrade,
            terms=Terms(interval_unit=unit, interval_count=1, price=Decimal(price),
                        currency="USD", trial_days=trial, entitlements=tuple(entitlements)),
        )

    return {
        "FREE_DAILY": make("free_daily", "months", "0", 0, "prorated",
                           EntitlementSpec("allowance", product="credits", amount=5,
                                           reset_unit="days", rollover_cap=3)),
        "BASIC": make("basic", "months", "10", 3, "prorated",
                      EntitlementSpec("allowance", product="credits", amount=20),
                      EntitlementSpec("access", product="pro")),
        "PREMIUM": make("premium", "months", "30", 0, "full",
                        EntitlementSpec("allowance", product="credits", amount=60,
                                        rollover_cap=10),
                        EntitlementSpec("access", product="pro")),
        "ANNUAL": make("annual", "years", "100", 0, "prorated",
                       EntitlementSpec("allowance", product="credits", amount=50,
                                       reset_unit="months", rollover_cap=20)),
    }


# The histories' time budget, checked as each history starts, outside any transaction. Without
# it, a run past pytest-timeout's limit was interrupted inside a history's transaction; hypothesis
# took the interruption for a failing history and replayed it on the broken transaction, and
# reported a TransactionManagementError (after whatever refusal, such as SubscriptionExists, the
# interruption fell in) instead of the lack of time. On a Citus coordinator every statement goes
# on to a worker: the run takes longer there, more so while other runs share the machine.
BUDGET_SECONDS = 540
CITUS_BUDGET_FACTOR = 3


class OutOfTime(KeyboardInterrupt):
    """A history would start past the budget. An interruption, as hypothesis knows one: it stops
    the run at once, without taking it for a failing history to replay and shrink."""


class SubscriptionMachine(RuleBasedStateMachine):
    plans: dict[str, Plan] = {}
    offers: dict[str, Offer] = {}
    # What the run got to do, over every example (the test checks it did each thing).
    done: Counter[str] = Counter()

    def __init__(self) -> None:
        super().__init__()
        self._atomic = transaction.atomic()
        self._atomic.__enter__()
        self.now = timezone.now().replace(microsecond=0)
        clock.set_now(self.now)
        self.customers = [Customer.objects.create(), Customer.objects.create()]

    def teardown(self) -> None:
        clock.set_now(None)
        transaction.set_rollback(True)
        self._atomic.__exit__(None, None, None)

    def attempt(self, name: str, work: Any) -> Any:
        try:
            with transaction.atomic():
                result = work()
        except REFUSALS as refused:
            event(f"{name}: {type(refused).__name__}")
            self.done[f"{name} refused: {type(refused).__name__}"] += 1
            return None
        self.done[name] += 1
        return result

    def subscriptions(self) -> list[Subscription]:
        return list(
            Subscription.objects.filter(customer__in=self.customers).order_by("created_at", "id")
        )

    def pick(self, index: int) -> Subscription | None:
        found = self.subscriptions()
        return found[index % len(found)] if found else None

    # --- Rules

    @rule(customer=st.integers(0, 1), plan=st.sampled_from(["FREE_DAILY", "BASIC", "PREMIUM",
                                                             "ANNUAL"]),
          trial=st.booleans())
    def subscribe(self, customer: int, plan: str, trial: bool) -> None:
        created = self.attempt("subscribe", lambda: subscription_services.subscription_create(
            customer=self.customers[customer], plan=self.plans[plan], trial=trial,
        ))
        if created is not None:
            assert created.status in ("trialing", "active")
            assert created.current_period_start == self.now

    @rule(customer=st.integers(0, 1), amount=st.integers(1, 15))
    def consume(self, customer: int, amount: int) -> None:
        target = self.customers[customer]
        before = selectors.balance_get(customer=target, feature="work")
        used = self.attempt("consume", lambda: quota_services.quota_consume(
            customer=target, feature="work", amount=amount,
        ))
        if used is not None:
            assert before.remaining is not None and used.remaining == before.remaining - amount
        else:
            assert (before.remaining or 0) < amount

    @rule(customer=st.integers(0, 1), sku=st.sampled_from(["TOPUP_5", "TOPUP_4_1D"]))
    def top_up(self, customer: int, sku: str) -> None:
        grant_services.offer_grant(
            customer=self.customers[customer], offer=self.offers[sku], kind="bonus"
        )

    @rule(step=st.sampled_from(STEPS), sweep=st.booleans())
    def advance(self, step: timedelta, sweep: bool) -> None:
        self.now += step
        clock.set_now(self.now)
        if sweep:
            self.sweep()

    @rule()
    def sweep(self) -> None:
        tenant_sweep()
        self.done["rollover"] = SubscriptionGrant.objects.filter(
            rollover_batch__isnull=False
        ).count() + self.done["rollover"]
        self.done["lapsed"] += Subscription.objects.filter(
            customer__in=self.customers, status__in=["past_due", "expired"]
        ).count()
        for sub in self.subscriptions():
            assert sub.next_due_at is None or sub.next_due_at > self.now, (
                sub.status, sub.next_due_at, self.now
            )

    @rule(pick=st.integers(0, 100))
    def pay_renewal(self, pick: int) -> None:
        pending = list(Order.objects.filter(
            subscription__customer__in=self.customers, status="pending"
        ).order_by("created_at"))
        if not pending:
            sub = self.pick(pick)
            if sub is None:
                return
            made = self.attempt("renewal order", lambda: (
                subscription_services.subscription_renewal_order(subscription=sub)
            ))
            if made is None:
                return
            pending = [made[0]]
        order = pending[pick % len(pending)]
        paid = self.attempt("confirm", lambda: order_services.order_confirm(order=order))
        if paid is not None:
            assert paid.status == "paid"
            assert order.subscription_id is not None
            sub = Subscription.objects.get(pk=order.subscription_id)
            assert sub.covered_period >= (order.period_number or 0)

    @rule(pick=st.integers(0, 100))
    def refund_renewal(self, pick: int) -> None:
        paid = list(Order.objects.filter(
            subscription__customer__in=self.customers, status="paid"
        ).order_by("created_at"))
        if paid:
            order = paid[pick % len(paid)]
            self.attempt("refund", lambda: order_services.order_refund(order=order))

    @rule(pick=st.integers(0, 100), action=st.sampled_from(["cancel", "resume", "pause",
                                                            "unpause"]),
          aimed=st.booleans())
    def lifecycle(self, pick: int, action: str, aimed: bool) -> None:
        """An action on any subscription, or (aimed) on one in the state it applies to."""
        found = self.subscriptions()
        if aimed:
            fits = {
                "cancel": lambda sub: sub.status in ("trialing", "active", "paused"),
                "resume": lambda sub: sub.cancel_at_period_end and sub.ended_at is None,
                "pause": lambda sub: sub.status in ("trialing", "active"),
                "unpause": lambda sub: sub.status == "paused",
            }[action]
            found = [sub for sub in found if fits(sub)] or found
        if not found:
            return
        sub = found[pick % len(found)]
        work = getattr(subscription_services, f"subscription_{action}")
        done = self.attempt(action, lambda: work(subscription=sub))
        if done is not None:
            expected = {"pause": {"paused"}, "unpause": {"trialing", "active"},
                        "resume": {"trialing", "active"},
                        "cancel": {"trialing", "active", "cancelled"}}[action]
            assert done.status in expected, (action, done.status)

    @rule(pick=st.integers(0, 100), plan=st.sampled_from(["FREE_DAILY", "BASIC", "PREMIUM",
                                                           "ANNUAL"]),
          at=st.sampled_from([None, "now", "period_end"]))
    def change(self, pick: int, plan: str, at: str | None) -> None:
        sub = self.pick(pick)
        if sub is None:
            return
        self.attempt("change", lambda: subscription_services.subscription_change(
            subscription=sub, plan=self.plans[plan], at=at,  # type: ignore[arg-type]
        ))

    # --- Invariants

    @invariant()
    def ledger_verifies(self) -> None:
        report = selectors.ledger_verify()
        assert report.ok, [drift.describe() for drift in report.drifts]

    @invariant()
    def plan_debits_touch_only_plan_batches(self) -> None:
        touched = LedgerEntry.objects.filter(
            action_type__in=PLAN_DEBITS, direction="debit",
            batch__customer__in=self.customers,
        ).exclude(batch__source="plan")
        assert not touched.exists(), list(touched.values("action_type", "batch__source"))

    @invariant()
    def allowance_periods_never_overlap(self) -> None:
        windows: dict[tuple[Any, Any], list[tuple[datetime, datetime]]] = {}
        for grant in SubscriptionGrant.objects.filter(
            subscription__customer__in=self.customers,
            entitlement__entitlement_type="allowance",
            batch__state__in=["active", "exhausted", "paused"],
        ).select_related("batch"):
            batch = grant.batch
            assert batch is not None and batch.expires_at is not None
            assert batch.expires_at == grant.period_end
            assert grant.period_start <= batch.valid_from < grant.period_end
            windows.setdefault((grant.subscription_id, batch.product_id), []).append(
                (batch.valid_from, batch.expires_at)
            )
        for spans in windows.values():
            spans.sort()
            for (_start, end), (next_start, _end) in pairwise(spans):
                assert next_start >= end, spans

    @invariant()
    def rollover_within_its_cap(self) -> None:
        for grant in SubscriptionGrant.objects.filter(
            subscription__customer__in=self.customers, rollover_batch__isnull=False
        ).select_related("rollover_batch", "entitlement"):
            assert grant.rollover_batch is not None
            assert 0 < grant.rollover_batch.initial <= (grant.entitlement.rollover_cap or 0)

    @invariant()
    def balances_equal_usable_batches(self) -> None:
        for customer in self.customers:
            rows = QuotaBatch.objects.filter(
                customer=customer, state="active", valid_from__lte=self.now,
                product__key="CREDITS",
            ).filter(Q(expires_at__isnull=True) | Q(expires_at__gt=self.now))
            units = rows.aggregate(s=Sum("remaining"))["s"] or 0
            balance = selectors.balance_get(customer=customer, feature="work")
            assert (balance.remaining, balance.can_use) == (units, units > 0)

    @invariant()
    def rights_follow_the_status(self) -> None:
        for sub in self.subscriptions():
            usable = QuotaBatch.objects.filter(
                Q(subscription_grant__subscription=sub) | Q(rolled_into__subscription=sub),
                state="active", valid_from__lte=self.now,
            ).filter(Q(expires_at__isnull=True) | Q(expires_at__gt=self.now))
            if sub.status in ("paused", "past_due", "cancelled", "expired"):
                assert not usable.exists(), (sub.status, list(usable.values("source")))
            elif (
                sub.current_period_start <= self.now < sub.current_period_end
                and sub.version.entitlements.filter(entitlement_type="access").exists()
            ):
                assert selectors.balance_get(customer=sub.customer, feature="support").can_use


@pytest.fixture
def subscription_catalog(in_acme: TenantFixture) -> None:
    product_create(key="credits", name="Credits", product_type="quantity", features=["work"])
    product_create(key="pro", name="Pro", product_type="period", features=["support"])
    SubscriptionMachine.offers = {
        "TOPUP_5": offer_create(sku="topup_5", name="5 credits", price=Decimal("1"),
                                currency="USD", items=[ItemSpec("CREDITS", 5)]),
        "TOPUP_4_1D": offer_create(sku="topup_4_1d", name="4 credits a day", price=Decimal("1"),
                                   currency="USD", items=[ItemSpec("CREDITS", 4, "days", 1)]),
    }
    SubscriptionMachine.plans = _plans()


# A failing example is shrunk for at most 300 s (hypothesis' own limit) before it is reported;
# the timeout is only for a history that hangs (the budget above ends a slow run).
@pytest.mark.timeout(CITUS_BUDGET_FACTOR * BUDGET_SECONDS + 360)
def test_subscription_invariants_hold_for_random_histories(
    subscription_catalog: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    on_citus = citus_enabled()
    budget = BUDGET_SECONDS * (CITUS_BUDGET_FACTOR if on_citus else 1)
    deadline = time.monotonic() + budget
    start_history = SubscriptionMachine.__init__

    def start_within_budget(machine: SubscriptionMachine) -> None:
        if time.monotonic() > deadline:
            raise OutOfTime(f"the histories ran past their budget ({budget} s"
                            f"{' on Citus' if on_citus else ''}): a slower machine or database, "
                            "not a broken invariant")
        start_history(machine)

    # Around the machine's __init__, not in it: with `derandomize` hypothesis draws the histories
    # from a digest of the machine's source, and these 80 do every step checked below (a change
    # to the class's text draws others, which may not).
    monkeypatch.setattr(SubscriptionMachine, "__init__", start_within_budget)
    try:
        run_state_machine_as_test(
            SubscriptionMachine,
            settings=settings(
                max_examples=80,
                stateful_step_count=50,
                deadline=None,
                database=None,
                derandomize=True,
                suppress_health_check=[HealthCheck.too_slow],
            ),
        )
        done = SubscriptionMachine.done
        for step in ("subscribe", "consume", "confirm", "refund", "cancel", "resume", "pause",
                     "unpause", "change", "rollover", "lapsed"):
            assert done[step] > 0, f"{step} never happened: {sorted(done.items())}"
    except OutOfTime as exc:
        pytest.fail(str(exc))
    finally:
        SubscriptionMachine.done = Counter()
        SubscriptionMachine.plans = {}
        SubscriptionMachine.offers = {}
        clock.set_now(None)
