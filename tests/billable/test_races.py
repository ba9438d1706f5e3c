"""The races of issue 12 against the real database: real threads, one connection each.

Exchange against consume, merge against consume and against confirm, refund against consume,
the expiry sweep against consume at the exact expiry instant, and a hold's commit against the
hold sweep. Like tests/billable/test_concurrency.py: a fresh committed tenant for this module
(the `conc` fixture), one client per thread released together by a Barrier
(tests/support/concurrency.py); sweeps run as service calls in threads of their own. Every case
then checks that every answer is a success or an expected problem, that client successes equal
the ledger's debits, and that every batch equals its ledger and none is negative.
"""

from __future__ import annotations

import itertools
import json
import secrets
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.db import connection
from django.db.models import Sum
from django.utils import timezone
from django_tenants.utils import tenant_context

from billable import clock, signals
from billable.models import (
    Customer,
    Grant,
    Hold,
    LedgerEntry,
    Order,
    QuotaBatch,
    SubscriptionGrant,
    Usage,
)
from billable.selectors import CustomerRef, balance_get, ledger_verify
from billable.services.catalog import ItemSpec, offer_create, product_create
from billable.services.customers import customer_ensure
from billable.services.grants import adjustment_create, offer_grant
from billable.services.holds import hold_create, holds_expire_due
from billable.services.orders import LineIn, order_confirm, order_create
from billable.services.plans import EntitlementSpec, Terms, plan_create
from billable.services.quota import quota_consume
from billable.services.subscriptions import subscription_create
from billable.services.sweep import tenant_sweep
from tests.support.api import Api, Response
from tests.support.billing import assert_ledger_invariant, ledger_sum
from tests.support.concurrency import Call, ConcTenant, hammer, poster

SPEND_PROBLEMS = {"insufficient_quota", "quota_exhausted"}


@pytest.fixture(scope="module")
def races_catalog(conc: ConcTenant, django_db_blocker: Any) -> ConcTenant:
    """Adds to the module's tenant: a currency (COINS), offers of it and paid in it (credits,
    and 30 days of Pro), and an offer of two credit batches (one expiring, one not)."""
    with django_db_blocker.unblock(), tenant_context(conc.tenant):
        product_create(key="coins", name="Coins", product_type="quantity", is_currency=True)
        conc.offers["coins_30_30d"] = offer_create(
            sku="coins_30_30d", name="30 coins", price=Decimal("3"), currency="USD",
            items=[ItemSpec("COINS", 30, "days", 30)],
        )
        conc.offers["coins_20"] = offer_create(
            sku="coins_20", name="20 coins", price=Decimal("2"), currency="USD",
            items=[ItemSpec("COINS", 20)],
        )
        conc.offers["c10_for_5_coins"] = offer_create(
            sku="c10_for_5_coins", name="10 credits for 5 coins", price=Decimal("5"),
            currency="COINS", items=[ItemSpec("CREDITS", 10)],
        )
        conc.offers["pro_for_5_coins"] = offer_create(
            sku="pro_for_5_coins", name="30 days of Pro for 5 coins", price=Decimal("5"),
            currency="COINS", items=[ItemSpec("PRO", 1, "days", 30)],
        )
        conc.offers["c10_twice"] = offer_create(
            sku="c10_twice", name="10 credits now, 10 for a month", price=Decimal("2"),
            currency="USD", items=[ItemSpec("CREDITS", 10), ItemSpec("CREDITS", 10, "days", 30)],
        )
    return conc


@pytest.fixture
def pinned_clock() -> Iterator[None]:
    """Release the billing clock after the test, whatever it was pinned to."""
    yield
    clock.set_now(None)


# --- helpers


def customer(conc: ConcTenant, external_id: str, *skus: str, provider: str = "default") -> Customer:
    """A customer with a bonus grant of each SKU."""
    with tenant_context(conc.tenant):
        found = customer_ensure(CustomerRef(external_id=external_id, provider=provider))
        for sku in skus:
            offer_grant(customer=found, offer=conc.offers[sku], kind="bonus")
    return found


def job(conc: ConcTenant, work: Callable[[], Any]) -> Call:
    """A service call (a sweep) run like a request: in its own thread, in the tenant's schema.

    It answers a 200 carrying what `work` returned; an exception fails the hammer.
    """

    def call(_api: Api) -> Response:
        with tenant_context(conc.tenant):
            result = work()
        return Response(status=200, headers={}, body=json.dumps(result).encode())

    return call


def expect(responses: Sequence[Response], allowed: dict[int, set[str]]) -> None:
    """Every answer has an allowed status; every problem an allowed code (never a 5xx)."""
    for response in responses:
        assert response.status in allowed, (response.status, response.body[:300])
        codes = allowed[response.status]
        if codes:
            assert response.json["code"] in codes, response.body[:300]


def verified(conc: ConcTenant) -> None:
    """billing_verify over the tenant: every batch equals its ledger, none negative."""
    with tenant_context(conc.tenant):
        report = ledger_verify(slug=conc.tenant.slug)
        assert_ledger_invariant()
        assert not QuotaBatch.objects.filter(remaining__lt=0).exists()
    assert report.ok, [drift.describe() for drift in report.drifts]


def debited(batches: Any, action_type: str) -> int:
    return int(
        LedgerEntry.objects.filter(
            batch__in=batches, direction="debit", action_type=action_type
        ).aggregate(s=Sum("amount"))["s"] or 0
    )


def remaining(conc: ConcTenant, who: Customer, feature: str) -> int:
    with tenant_context(conc.tenant):
        return int(balance_get(customer=who, feature=feature).remaining or 0)


def test_the_module_runs_on_the_test_database(db: None) -> None:
    """Also makes pytest-django create the test database when this module runs alone."""
    assert str(connection.settings_dict["NAME"]).startswith("test_")


# --- 1. exchange against consume of the same currency


def test_exchanges_racing_consumes_of_the_currency_spend_each_coin_once(
    races_catalog: ConcTenant, committed: None
) -> None:
    # given: 50 coins in two batches; 8 exchanges of 5 (credits, or 30 days of Pro, which
    # extend one another) and 24 consumes of 1 want 64
    conc = races_catalog
    who = customer(conc, f"xc-{secrets.token_hex(3)}", "coins_30_30d", "coins_20")
    ref = {"customer_id": str(who.pk)}
    consume = poster(conc, "billing/quota/consume", {**ref, "feature": "coins", "amount": 1})
    calls: list[Call] = []
    for index in range(8):
        sku = "c10_for_5_coins" if index % 2 else "pro_for_5_coins"
        calls += [poster(conc, "billing/exchange", {**ref, "sku": sku}), consume, consume, consume]

    # when
    responses = hammer(calls)

    # then: each coin went to exactly one winner
    exchanges = [r for i, r in enumerate(responses) if i % 4 == 0]
    consumes = [r for i, r in enumerate(responses) if i % 4 != 0]
    expect(responses, {200: set(), 402: SPEND_PROBLEMS})
    bought = [r.json for r in exchanges if r.status == 200]
    used = [r.json for r in consumes if r.status == 200]
    spent = 5 * len(bought) + len(used)
    left = remaining(conc, who, "coins")
    assert left == 50 - spent
    if any(r.status == 402 for r in consumes):
        assert left == 0  # nothing credits coins back: a consume refused means none were left
    if any(r.status == 402 for r in exchanges):
        assert left < 5
    seen = [u["remaining"] for u in used]
    assert len(set(seen)) == len(seen), "each consume saw a distinct balance"
    assert all(order["status"] == "paid" for order in bought)
    skus = [order["items"][0]["sku"] for order in bought]
    with tenant_context(conc.tenant):
        coins = QuotaBatch.objects.filter(customer=who, product__key="COINS")
        assert debited(coins, "exchange") == 5 * len(bought)
        assert debited(coins, "usage") == len(used)
        exchange_ids = set(
            LedgerEntry.objects.filter(batch__in=coins, action_type="exchange")
            .values_list("action_id", flat=True)
        )
        assert exchange_ids == {order["id"] for order in bought}
        assert Order.objects.filter(customer=who, payment_method="exchange").count() == len(bought)
        credits = QuotaBatch.objects.filter(customer=who, product__key="CREDITS", source="exchange")
        assert credits.count() == skus.count("C10_FOR_5_COINS")
        assert sum(ledger_sum(batch) for batch in credits) == 10 * credits.count()
        pro = list(
            QuotaBatch.objects.filter(customer=who, product__key="PRO")
            .order_by("valid_from").values_list("valid_from", "expires_at")
        )
        assert len(pro) == skus.count("PRO_FOR_5_COINS")
        for (_start, end), (next_start, _end) in itertools.pairwise(pro):
            assert next_start == end, "each Pro exchange extends the one before"
        assert Usage.objects.filter(customer=who, feature="coins").count() == len(used)
    verified(conc)


# --- 2. merge against consume, and merge against confirm


def test_merge_racing_consumes_of_both_customers_loses_no_unit(
    races_catalog: ConcTenant, committed: None
) -> None:
    conc = races_catalog
    for _round in range(4):
        # given: the source has 20 credits, the target 10; 8 consumes name each of them
        token = secrets.token_hex(3)
        source = customer(conc, f"m-{token}", "c20_30d", provider="s")
        target = customer(conc, f"m-{token}", "c10", provider="t")
        merge = poster(conc, "billing/customers/merge", {
            "target_customer_id": str(target.pk), "source_customer_id": str(source.pk)})
        calls: list[Call] = [merge]
        for who in (source, target) * 8:
            calls.append(poster(conc, "billing/quota/consume",
                                {"customer_id": str(who.pk), "feature": "compute"}))

        # when
        responses = hammer(calls)

        # then: the merge went through and every consume found the units that were there all
        # along: 8 from either customer's own, whichever side of the merge it ran on
        assert responses[0].status == 200, responses[0].body[:300]
        assert responses[0].json["target_customer_id"] == str(target.pk)
        expect(responses[1:], {200: set()})
        for response in responses[1:]:
            assert response.json["customer_id"] in (str(source.pk), str(target.pk))
        with tenant_context(conc.tenant):
            assert not QuotaBatch.objects.filter(customer=source).exists()
            assert not Usage.objects.filter(customer=source).exists(), "a usage stayed behind"
            batches = QuotaBatch.objects.filter(customer=target)
            assert batches.count() == 2
            assert debited(batches, "usage") == 16
            assert Usage.objects.filter(customer=target).aggregate(s=Sum("amount"))["s"] == 16
        assert remaining(conc, target, "compute") == 30 - 16
        verified(conc)


def test_merge_racing_the_confirms_of_source_orders(
    races_catalog: ConcTenant, committed: None
) -> None:
    conc = races_catalog
    for _round in range(4):
        # given: three pending orders of 20 credits of the source; the target with 10 of its own
        token = secrets.token_hex(3)
        source = customer(conc, f"o-{token}", provider="s")
        target = customer(conc, f"o-{token}", "c10", provider="t")
        with tenant_context(conc.tenant):
            orders = [order_create(customer=source, items=[LineIn(sku="C10", quantity=2)])
                      for _ in range(3)]
        merge = poster(conc, "billing/customers/merge", {
            "target_customer_id": str(target.pk), "source_customer_id": str(source.pk)})
        confirms = [poster(conc, f"billing/orders/{order.pk}/confirm",
                           {"payment_id": f"pay-{order.pk}"}) for order in orders]
        calls = [*confirms[:_round % 4], merge, *confirms[_round % 4 :]]

        # when
        responses = hammer(calls)

        # then: all went through, in whatever order, and what the orders granted is the target's
        expect(responses, {200: set()})
        with tenant_context(conc.tenant):
            for order in orders:
                fresh = Order.objects.get(pk=order.pk)
                assert (fresh.status, fresh.customer_id) == ("paid", target.pk)
            granted = QuotaBatch.objects.filter(order_item__order__in=orders)
            assert {b.customer_id for b in granted} == {target.pk}, "a batch stayed behind"
            assert granted.count() == 3
            assert sum(ledger_sum(batch) for batch in granted) == 60
            assert not QuotaBatch.objects.filter(customer=source).exists()
        assert remaining(conc, target, "compute") == 70
        verified(conc)


def paused_inside(signal: Any, source: Customer, inside: threading.Event) -> Callable[..., None]:
    """A receiver of `signal` (sent inside the service's transaction) for the source: it says
    the transaction is open, with its rows written, and keeps it open a moment."""

    def receiver(*_args: Any, customer: Customer, **_kwargs: Any) -> None:
        if customer.pk == source.pk:
            inside.set()
            time.sleep(0.4)

    return receiver


def merge_once_inside(conc: ConcTenant, target: Customer, source: Customer,
                      inside: threading.Event) -> Call:
    """The merge, sent once a write for the source is inside its open transaction."""
    merge = poster(conc, "billing/customers/merge", {
        "target_customer_id": str(target.pk), "source_customer_id": str(source.pk)})

    def call(api: Api) -> Response:
        inside.wait(10)
        return merge(api)

    return call


def test_merge_racing_grants_to_the_source_strands_nothing(
    races_catalog: ConcTenant, committed: None
) -> None:
    conc = races_catalog
    for sku in ("c10", "pro_30d"):  # a quantity grant (FOR KEY SHARE) and a period one (UPDATE)
        # given: a merge sent while grants to the source are inside their transactions
        token = secrets.token_hex(3)
        source = customer(conc, f"g-{token}", provider="s")
        target = customer(conc, f"g-{token}", "c10", provider="t")
        inside = threading.Event()
        receiver = paused_inside(signals.grant_created, source, inside)
        signals.grant_created.connect(receiver, weak=False)
        grant = poster(conc, "billing/grants",
                       {"customer_id": str(source.pk), "sku": sku, "kind": "bonus"})
        try:
            # when
            responses = hammer([grant, grant, merge_once_inside(conc, target, source, inside),
                                grant])
        finally:
            signals.grant_created.disconnect(receiver)

        # then: every grant went through, and what it granted is the target's
        expect(responses, {200: set(), 201: set()})
        assert responses[2].json["target_customer_id"] == str(target.pk)
        with tenant_context(conc.tenant):
            assert not QuotaBatch.objects.filter(customer=source).exists(), "a batch stayed behind"
            assert not Grant.objects.filter(customer=source).exists(), "a grant stayed behind"
            assert Grant.objects.filter(customer=target, kind="bonus").count() == 1 + 3
            if sku == "pro_30d":
                pro = list(
                    QuotaBatch.objects.filter(customer=target, product__key="PRO")
                    .order_by("valid_from").values_list("valid_from", "expires_at")
                )
                assert len(pro) == 3
                for (_start, end), (next_start, _end) in itertools.pairwise(pro):
                    assert next_start == end, "each Pro grant extends the one before"
        if sku == "c10":
            assert remaining(conc, target, "compute") == 40
        verified(conc)


def test_merge_racing_the_creation_of_source_orders_strands_nothing(
    races_catalog: ConcTenant, committed: None
) -> None:
    # given: a merge sent while orders of the source are inside their transactions
    conc = races_catalog
    token = secrets.token_hex(3)
    source = customer(conc, f"oc-{token}", provider="s")
    target = customer(conc, f"oc-{token}", "c10", provider="t")
    inside = threading.Event()
    receiver = paused_inside(signals.order_created, source, inside)
    signals.order_created.connect(receiver, weak=False)
    create = poster(conc, "billing/orders",
                    {"customer_id": str(source.pk), "items": [{"sku": "c10", "quantity": 2}]})
    try:
        # when
        responses = hammer([create, create, merge_once_inside(conc, target, source, inside),
                            create])
    finally:
        signals.order_created.disconnect(receiver)
    merge = responses.pop(2)
    confirmed = hammer([
        poster(conc, f"billing/orders/{r.json['id']}/confirm", {"payment_id": f"p-{r.json['id']}"})
        for r in responses
    ])

    # then: every order, and what its confirm granted, is the target's
    assert merge.status == 200, merge.body[:300]
    expect(responses, {201: set()})
    expect(confirmed, {200: set()})
    with tenant_context(conc.tenant):
        assert not Order.objects.filter(customer=source).exists(), "an order stayed behind"
        assert not QuotaBatch.objects.filter(customer=source).exists(), "a batch stayed behind"
        orders = Order.objects.filter(pk__in=[r.json["id"] for r in responses])
        assert {(o.status, o.customer_id) for o in orders} == {("paid", target.pk)}
        granted = QuotaBatch.objects.filter(order_item__order__in=orders)
        assert {b.customer_id for b in granted} == {target.pk}
        assert sum(ledger_sum(batch) for batch in granted) == 60
    assert remaining(conc, target, "compute") == 70
    verified(conc)


def test_confirming_an_order_left_on_a_merged_source_grants_to_the_target(
    races_catalog: ConcTenant, committed: None
) -> None:
    # given: an order that a merge left on the source (as a race before the lock could)
    conc = races_catalog
    token = secrets.token_hex(3)
    source = customer(conc, f"os-{token}", provider="s")
    target = customer(conc, f"os-{token}", "c10", provider="t")
    with tenant_context(conc.tenant):
        order = order_create(customer=source, items=[LineIn(sku="PRO_30D", quantity=1),
                                                     LineIn(sku="C10", quantity=2)])
    merge = poster(conc, "billing/customers/merge", {
        "target_customer_id": str(target.pk), "source_customer_id": str(source.pk)})
    assert hammer([merge])[0].status == 200
    with tenant_context(conc.tenant):
        Order.objects.filter(pk=order.pk).update(customer=source)

    # when
    confirmed = hammer([poster(conc, f"billing/orders/{order.pk}/confirm", {})])

    # then: the grant and the order follow the merge to the target
    expect(confirmed, {200: set()})
    with tenant_context(conc.tenant):
        assert Order.objects.get(pk=order.pk).customer_id == target.pk
        granted = QuotaBatch.objects.filter(order_item__order=order)
        assert granted.count() == 2
        assert {b.customer_id for b in granted} == {target.pk}, "the grant went to the source"
    assert remaining(conc, target, "compute") == 30
    verified(conc)


# --- 3. refund against consume


def test_refund_racing_consumes_of_the_order_quota(
    races_catalog: ConcTenant, committed: None
) -> None:
    conc = races_catalog
    for _round in range(3):
        # given: a paid order of two batches (10 expiring, 10 not) and 10 credits of the
        # customer's own that never expire; 24 consumes of 1 want more than the order's 20
        who = customer(conc, f"rf-{secrets.token_hex(3)}", "c10")
        with tenant_context(conc.tenant):
            order = order_create(customer=who, items=[LineIn(sku="C10_TWICE", quantity=1)])
            order_confirm(order=order, payment_id=f"pre-{order.pk}")
        refund = poster(conc, f"billing/orders/{order.pk}/refund", {"reason": "race"})
        consume = poster(conc, "billing/quota/consume",
                         {"customer_id": str(who.pk), "feature": "compute"})
        calls = [consume] * 24
        calls.insert(4 + 8 * _round, refund)

        # when
        responses = hammer(calls)

        # then: the refund took what was left of the order's batches and no more; consumes
        # took each unit once, from either
        refunded = responses[4 + 8 * _round]
        consumes = responses[: 4 + 8 * _round] + responses[5 + 8 * _round :]
        assert refunded.status == 200 and refunded.json["status"] == "refunded", refunded.body
        expect(consumes, {200: set(), 402: SPEND_PROBLEMS})
        used = sum(1 for r in consumes if r.status == 200)
        with tenant_context(conc.tenant):
            granted = QuotaBatch.objects.filter(order_item__order=order)
            own = QuotaBatch.objects.filter(customer=who).exclude(pk__in=granted)
            assert set(granted.values_list("state", "remaining")) == {("revoked", 0)}
            assert debited(granted, "usage") + debited(granted, "refund") == 20
            assert debited(granted, "usage") + debited(own, "usage") == used
            # no consume drew from the order's batches once the refund had revoked them
            refunds = LedgerEntry.objects.filter(batch__in=granted, action_type="refund")
            last_refund = max(refunds.values_list("id", flat=True), default=None)
            if last_refund is not None:
                assert not LedgerEntry.objects.filter(
                    batch__in=granted, action_type="usage", id__gt=last_refund).exists()
            left = sum(b.remaining for b in own)
            assert left == 10 - debited(own, "usage")
        if any(r.status == 402 for r in consumes):
            assert left == 0
        assert remaining(conc, who, "compute") == left
        verified(conc)


# --- 4. the expiry sweep against consume at the exact expiry instant


def timed_consume(conc: ConcTenant, who: Customer, index: int,
                  seen: dict[str, datetime]) -> Call:
    """A consume of 1 that notes the billing clock just before it is sent."""
    body = {"customer_id": str(who.pk), "feature": "compute", "action_id": str(index)}

    def call(api: Api) -> Response:
        seen[str(index)] = clock.now()
        return api.post("billing/quota/consume", json=body, key=conc.key)

    return call


def sweep() -> dict[str, int]:
    result = tenant_sweep()
    return {"batches": result.batches_expired, "holds": result.holds_expired}


def clock_tick(at: datetime, *, after: float) -> Callable[[], dict[str, int]]:
    """Move the billing clock to `at` after a pause, then sweep."""

    def work() -> dict[str, int]:
        time.sleep(after)
        clock.set_now(at)
        return sweep()

    return work


def test_expiry_sweep_racing_consumes_at_the_expiry_instant(
    races_catalog: ConcTenant, committed: None, pinned_clock: None
) -> None:
    conc = races_catalog
    for delay in (0.0, 0.03, 0.08):
        # given: 12 units expiring at `expires` and 100 that never do; the clock one microsecond
        # before the expiry instant
        expires = (timezone.now() + timedelta(hours=1)).replace(microsecond=500_000)
        clock.set_now(expires - timedelta(microseconds=1))
        who = customer(conc, f"ex-{secrets.token_hex(3)}")
        with tenant_context(conc.tenant):
            expiring = adjustment_create(customer=who, product_key="credits", amount=12,
                                         reason="race", expires_at=expires).batches[0]
            lasting = adjustment_create(customer=who, product_key="credits", amount=100,
                                        reason="race").batches[0]
        sent_at: dict[str, datetime] = {}
        calls = [timed_consume(conc, who, index, sent_at) for index in range(20)]
        # one thread moves the clock to the exact instant and sweeps; another sweeps at some
        # moment, before or after it
        calls.insert(10, job(conc, clock_tick(expires, after=delay)))
        calls.insert(15, job(conc, sweep))

        # when
        responses = hammer(calls)
        with tenant_context(conc.tenant):
            final = tenant_sweep()  # the sweep skips a batch a consume holds: expire it now

        # then: every consume succeeded, none sent at or after the instant drew from the
        # expiring batch, none drew from it after its expiry debit, and that debit was exactly
        # what was left
        sweeps = [responses.pop(15), responses.pop(10)]
        expect(responses, {200: set()})
        assert sum(s.json["batches"] for s in sweeps) + final.batches_expired == 1
        with tenant_context(conc.tenant):
            batch = QuotaBatch.objects.get(pk=expiring.pk)
            assert (batch.state, batch.remaining) == ("expired", 0)
            debits = LedgerEntry.objects.filter(batch=batch, direction="debit")
            expiry = debits.get(action_type="expiry")
            taken = debits.filter(action_type="usage")
            assert expiry.amount == 12 - debited([batch], "usage")
            assert not taken.filter(id__gt=expiry.id).exists(), "a use after the expiry debit"
            drew = set(Usage.objects.filter(entries__in=taken).values_list("action_id", flat=True))
            assert debited([lasting], "usage") + debited([batch], "usage") == 20
        late = {index for index, at in sent_at.items() if at >= expires}
        assert not late & drew, f"consumes {late & drew} drew from the batch at its expiry"
        verified(conc)
        clock.set_now(None)


# --- 5. hold commit against the hold sweep


def test_hold_commit_racing_the_hold_sweep_settles_each_hold_once(
    races_catalog: ConcTenant, committed: None, pinned_clock: None
) -> None:
    # given: 8 holds of 2 units out of 20, every one at its expiry instant
    conc = races_catalog
    start = (timezone.now() + timedelta(hours=2)).replace(microsecond=0)
    clock.set_now(start)
    who = customer(conc, f"hs-{secrets.token_hex(3)}", "c20_30d")
    with tenant_context(conc.tenant):
        holds = [hold_create(customer=who, feature="compute", amount=2, ttl_seconds=60)
                 for _ in range(8)]
    clock.set_now(start + timedelta(seconds=60))
    keep = {str(hold.pk): index % 3 for index, hold in enumerate(holds)}  # 0, 1 or 2 kept
    commits: list[Call] = [
        poster(conc, f"billing/holds/{pk}/commit", {"amount": amount})
        for pk, amount in keep.items()
    ]
    sweeper = job(conc, holds_expire_due)
    calls = [*commits[:3], sweeper, *commits[3:6], sweeper, *commits[6:], sweeper]

    # when
    responses = hammer(calls)

    # then: each hold was either committed (its commit answered 200) or expired by a sweep (its
    # commit answered 409), never both; the sweeps counted each expiry once
    sweeps = [responses[3], responses[7], responses[10]]
    answers = responses[:3] + responses[4:7] + responses[8:10]
    expect(answers, {200: set(), 409: {"hold_not_active"}})
    assert sum(s.json for s in sweeps) == sum(1 for r in answers if r.status == 409)
    kept = 0
    with tenant_context(conc.tenant):
        for (pk, amount), answer in zip(keep.items(), answers, strict=True):
            hold = Hold.objects.get(pk=pk)
            returned = LedgerEntry.objects.filter(hold=hold, action_type="hold.return")
            back = returned.aggregate(s=Sum("amount"))["s"] or 0
            if answer.status == 200:
                assert answer.json["status"] == "committed"
                assert (hold.status, hold.committed_amount) == ("committed", amount)
                assert back == 2 - amount
                kept += amount
            else:
                assert (hold.status, hold.committed_amount) == ("expired", 0)
                assert back == 2
        usages = Usage.objects.filter(customer=who).aggregate(s=Sum("amount"))["s"] or 0
        assert usages == kept
        batches = QuotaBatch.objects.filter(customer=who)
        assert debited(batches, "hold") == 16
    assert remaining(conc, who, "compute") == 20 - kept
    verified(conc)


# --- 6. allowance resets: two sweeps and consumes at the boundary instant


def test_sweeps_and_consumes_at_an_allowance_boundary_reset_once(
    races_catalog: ConcTenant, committed: None, pinned_clock: None
) -> None:
    # given: a free daily plan of 10 credits carrying up to 4 unused; 7 of the first day's used
    conc = races_catalog
    tag = secrets.token_hex(3)
    start = (timezone.now() + timedelta(hours=3)).replace(microsecond=0)
    clock.set_now(start)
    who = customer(conc, f"sb-{tag}")
    with tenant_context(conc.tenant):
        plan = plan_create(
            key=f"race-{tag}", name="race",
            terms=Terms("days", 1, Decimal("0"), "USD", 0, (
                EntitlementSpec("allowance", product="credits", amount=10, rollover_cap=4),
            )),
        )
        sub = subscription_create(customer=who, plan=plan)
        for index in range(7):
            quota_consume(customer=who, feature="compute", action_id=f"pre-{index}")
        first = SubscriptionGrant.objects.get(subscription=sub, period_index=0).batch_id
        # (the plan has an allowance only: every grant of it is an allowance period)
    boundary = start + timedelta(days=1)
    # the sweep ran half an hour before, as it does: the second period is written ahead
    clock.set_now(boundary - timedelta(minutes=30))
    with tenant_context(conc.tenant):
        tenant_sweep()
        assert SubscriptionGrant.objects.filter(subscription=sub).count() == 2
    clock.set_now(boundary - timedelta(microseconds=1))
    sent_at: dict[str, datetime] = {}
    calls = [timed_consume(conc, who, index, sent_at) for index in range(12)]
    # one thread moves the clock to the boundary and sweeps; another sweeps at some moment
    calls.insert(4, job(conc, clock_tick(boundary, after=0.02)))
    calls.insert(8, job(conc, sweep))

    # when
    responses = hammer(calls)
    with tenant_context(conc.tenant):
        tenant_sweep()

    # then: every consume sent at or after the boundary succeeded (a consume sent before it may
    # find the first period's 3 units gone: 402); one allowance per period; the rollover was
    # written once, exactly the first period's unused units at the boundary (at most 4); no
    # consume sent at or after the boundary drew from the first period
    del responses[8], responses[4]
    expect(responses, {200: set(), 402: {"quota_exhausted"}})
    refused = {str(index) for index, r in enumerate(responses) if r.status == 402}
    assert all(sent_at[index] < boundary for index in refused), "a late consume was refused"
    with tenant_context(conc.tenant):
        periods = SubscriptionGrant.objects.filter(subscription=sub)
        assert sorted(periods.values_list("period_index", flat=True)) == [0, 1]
        old = QuotaBatch.objects.get(pk=first)
        used_late = debited([old], "usage") - 7
        rolled = LedgerEntry.objects.filter(action_type="plan.rollover", direction="credit",
                                            batch__customer=who)
        assert rolled.count() == 1
        assert rolled.get().amount == min(4, 3 - used_late)
        drew = set(
            Usage.objects.filter(entries__batch=old, action_type="usage")
            .values_list("action_id", flat=True)
        )
    late = {index for index, at in sent_at.items() if at >= boundary}
    assert not late & drew, f"consumes {late & drew} drew from the first period after it ended"
    verified(conc)


# --- 7. a renewal's confirmation against the expiry of its past-due subscription


def test_renewal_confirm_racing_expiry_either_renews_or_refuses(
    races_catalog: ConcTenant, committed: None, pinned_clock: None
) -> None:
    conc = races_catalog
    tag = secrets.token_hex(3)
    with tenant_context(conc.tenant):
        plan = plan_create(
            key=f"renew-{tag}", name="renew",
            terms=Terms("days", 1, Decimal("5"), "USD", 0, (
                EntitlementSpec("allowance", product="credits", amount=10),
                EntitlementSpec("access", product="pro"),
            )),
        )
    for round_, delay in enumerate((0.0, 0.02, 0.05, 0.1)):
        # given: a daily paid plan left unpaid: past due, its renewal order pending; the clock
        # one microsecond before its grace days end
        start = (timezone.now() + timedelta(hours=4)).replace(microsecond=0)
        clock.set_now(start)
        who = customer(conc, f"rn-{tag}-{round_}")
        with tenant_context(conc.tenant):
            sub = subscription_create(customer=who, plan=plan)
            clock.set_now(sub.current_period_end)
            tenant_sweep()
            sub.refresh_from_db()
            assert sub.status == "past_due"
            order = Order.objects.get(subscription=sub, status="pending")
            expires = sub.next_due_at
        assert expires is not None
        clock.set_now(expires - timedelta(microseconds=1))
        confirm = poster(conc, f"billing/orders/{order.pk}/confirm",
                         {"payment_id": f"pay-{tag}-{round_}"})
        calls = [confirm, confirm, confirm]
        calls.insert(1, job(conc, clock_tick(expires, after=delay)))
        calls.insert(3, job(conc, sweep))

        # when
        responses = hammer(calls)
        with tenant_context(conc.tenant):
            tenant_sweep()

        # then: either the payment renewed the subscription (every confirm 200, the order paid,
        # the subscription active with the next day's access) or the expiry came first (every
        # confirm refused, the order withdrawn, nothing of the plan usable after the end)
        del responses[3], responses[1]
        expect(responses, {200: set(), 409: {"subscription_not_active", "invalid_order_state"}})
        won = {response.status for response in responses}
        assert len(won) == 1, [r.body for r in responses]
        with tenant_context(conc.tenant):
            sub.refresh_from_db()
            order.refresh_from_db()
            live = QuotaBatch.objects.filter(
                subscription_grant__subscription=sub, state="active", expires_at__gt=expires
            )
            if won == {200}:
                assert (sub.status, order.status, sub.covered_period) == ("active", "paid", 2)
                assert live.exists()
            else:
                assert (sub.status, order.status) == ("expired", "cancelled")
                assert not live.exists()
        verified(conc)
        clock.set_now(None)
