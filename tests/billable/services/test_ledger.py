"""The ledger: append-only in the database, non-negative batches, remaining == credits - debits."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.db import DatabaseError, IntegrityError, connection, transaction
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from billable import clock
from billable.errors import BatchNotActive, HoldNotActive, InsufficientQuota, QuotaExhausted
from billable.models import Customer, Direction, LedgerEntry, Offer, Product, QuotaBatch
from billable.selectors import balance_get, contiguous_end
from billable.services import ledger
from billable.services.grants import adjustment_create, batch_revoke
from billable.services.holds import hold_commit, hold_create, hold_release
from billable.services.quota import debit, quota_consume
from tests.support.billing import assert_ledger_invariant, grant, ledger_sum

Catalog = dict[str, Product | Offer]
T0 = datetime(2030, 6, 1, tzinfo=UTC)


def _some_entry(customer: Customer) -> LedgerEntry:
    grant(customer, "reports_10")
    return LedgerEntry.objects.filter(batch__customer=customer).first()  # type: ignore[return-value]


# --- Append-only, enforced by the database


def test_database_refuses_update_of_an_entry(catalog: Catalog, alice: Customer) -> None:
    entry = _some_entry(alice)

    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        LedgerEntry.objects.filter(pk=entry.pk).update(amount=999)

    assert LedgerEntry.objects.get(pk=entry.pk).amount == 10


def test_database_refuses_save_of_a_changed_entry(catalog: Catalog, alice: Customer) -> None:
    entry = _some_entry(alice)
    entry.metadata = {"tampered": True}

    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        entry.save()

    assert LedgerEntry.objects.get(pk=entry.pk).metadata == {}


def test_database_refuses_delete_of_an_entry(catalog: Catalog, alice: Customer) -> None:
    entry = _some_entry(alice)

    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        LedgerEntry.objects.filter(pk=entry.pk).delete()

    assert LedgerEntry.objects.filter(pk=entry.pk).exists()


@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE billable_ledgerentry SET amount = amount + 1",
        "UPDATE billable_ledgerentry SET batch_id = batch_id",
        "DELETE FROM billable_ledgerentry",
        "TRUNCATE billable_ledgerentry",
    ],
)
def test_database_refuses_raw_changes(catalog: Catalog, alice: Customer, sql: str) -> None:
    _some_entry(alice)
    before = LedgerEntry.objects.count()

    with connection.cursor() as cursor:
        # Run the deferred FK checks first: TRUNCATE refuses a table with pending trigger events.
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
            cursor.execute(sql)

    assert LedgerEntry.objects.count() == before


def test_appending_entries_is_allowed(catalog: Catalog, alice: Customer) -> None:
    batch = grant(alice, "reports_10").batches[0]

    ledger.write_entries([ledger.Take(batch.pk, 2)], direction=Direction.DEBIT,
                         action_type="test")

    assert LedgerEntry.objects.filter(batch=batch).count() == 2


# --- Constraints


def test_check_refuses_a_negative_batch(catalog: Catalog, alice: Customer) -> None:
    batch = grant(alice, "reports_10").batches[0]

    with pytest.raises(IntegrityError), transaction.atomic():
        QuotaBatch.objects.filter(pk=batch.pk).update(remaining=-1)

    assert QuotaBatch.objects.get(pk=batch.pk).remaining == 10


def test_check_refuses_a_debit_beyond_remaining(catalog: Catalog, alice: Customer) -> None:
    batch = grant(alice, "reports_10").batches[0]

    with pytest.raises(IntegrityError), transaction.atomic():
        ledger.write_entries([ledger.Take(batch.pk, 11)], direction=Direction.DEBIT,
                             action_type="test")

    assert QuotaBatch.objects.get(pk=batch.pk).remaining == 10
    assert LedgerEntry.objects.filter(batch=batch).count() == 1


@pytest.mark.parametrize("amount", [0, -5])
def test_check_refuses_non_positive_entries(
    catalog: Catalog, alice: Customer, amount: int
) -> None:
    batch = grant(alice, "reports_10").batches[0]

    with pytest.raises(IntegrityError), transaction.atomic():
        LedgerEntry.objects.create(batch=batch, direction="credit", amount=amount,
                                   action_type="test")


def test_check_refuses_an_unknown_direction(catalog: Catalog, alice: Customer) -> None:
    batch = grant(alice, "reports_10").batches[0]

    with pytest.raises(IntegrityError), transaction.atomic():
        LedgerEntry.objects.create(batch=batch, direction="up", amount=1,
                                   action_type="test")


# --- The invariant


def test_invariant_after_mixed_operations(
    catalog: Catalog, alice: Customer, bob: Customer
) -> None:
    with clock.frozen(T0):
        grant(alice, "reports_10")
        grant(alice, "reports_5_forever", kind="bonus")
        grant(alice, "pro_month")
        grant(alice, "pro_month")
        grant(bob, "reports_10")
        adjustment_create(customer=alice, product_key="reports", amount=4, reason="gift",
                          expires_at=T0 + timedelta(hours=2))
        quota_consume(customer=alice, feature="reports", amount=6)
        quota_consume(customer=alice, feature="pro", amount=3)
        first = hold_create(customer=alice, feature="reports", amount=5)
        second = hold_create(customer=alice, feature="report_generation", amount=3)
        hold_commit(hold=first, amount=2)
        adjustment_create(customer=alice, product_key="reports", amount=-2, reason="fix")
        victim = QuotaBatch.objects.filter(customer=alice, remaining__gt=0,
                                           product__key="REPORTS").last()
        assert victim is not None
        batch_revoke(batch=victim)
        quota_consume(customer=bob, feature="reports", amount=10)
    with clock.frozen(T0 + timedelta(hours=3)):
        hold_release(hold=second)
        left = balance_get(customer=alice, feature="reports").remaining

    assert_ledger_invariant()
    usable = QuotaBatch.objects.filter(
        customer=alice, product__key="REPORTS", state="active", expires_at__gt=T0 + timedelta(
            hours=3)
    ) | QuotaBatch.objects.filter(
        customer=alice, product__key="REPORTS", state="active", expires_at__isnull=True
    )
    assert left == sum(b.remaining for b in usable)


def test_period_and_unlimited_batches_hold_one_unit(catalog: Catalog, alice: Customer) -> None:
    batches = grant(alice, "pro_month").batches + grant(alice, "unl_forever").batches
    quota_consume(customer=alice, feature="pro", amount=7)
    quota_consume(customer=alice, feature="unl", amount=7)

    for batch in batches:
        stored = QuotaBatch.objects.get(pk=batch.pk)
        assert (stored.initial, stored.remaining, ledger_sum(stored)) == (1, 1, 1)


_OPS = st.lists(
    st.one_of(
        st.tuples(st.just("grant"), st.sampled_from(["reports_10", "reports_5_forever"])),
        st.tuples(st.just("consume"), st.integers(min_value=1, max_value=12)),
        st.tuples(st.just("hold"), st.integers(min_value=1, max_value=8)),
        st.tuples(st.just("commit"), st.integers(min_value=0, max_value=8)),
        st.tuples(st.just("release"), st.just(0)),
        st.tuples(st.just("adjust"), st.integers(min_value=-6, max_value=6).filter(bool)),
        st.tuples(st.just("revoke"), st.integers(min_value=0, max_value=5)),
        st.tuples(st.just("advance"), st.integers(min_value=1, max_value=40)),
    ),
    max_size=14,
)


class _Rollback(Exception):
    pass


@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=_OPS)
def test_invariant_holds_for_random_operation_sequences(
    catalog: Catalog, alice: Customer, ops: list[tuple[str, Any]]
) -> None:
    try:
        with transaction.atomic():
            _run(alice, ops)
            assert_ledger_invariant(alice)
            raise _Rollback
    except _Rollback:
        pass


def _run(customer: Customer, ops: list[tuple[str, Any]]) -> None:
    now = T0
    holds: list[Any] = []
    expected_errors = (InsufficientQuota, QuotaExhausted, HoldNotActive, BatchNotActive)
    for op, arg in ops:
        with clock.frozen(now):
            try:
                if op == "grant":
                    grant(customer, arg)
                elif op == "consume":
                    quota_consume(customer=customer, feature="reports", amount=arg)
                elif op == "hold":
                    holds.append(hold_create(customer=customer, feature="reports", amount=arg))
                elif op == "commit" and holds:
                    hold = holds.pop(0)
                    hold_commit(hold=hold, amount=min(arg, hold.amount))
                elif op == "release" and holds:
                    hold_release(hold=holds.pop())
                elif op == "adjust":
                    adjustment_create(customer=customer, product_key="reports", amount=arg,
                                      reason="prop", expires_at=now + timedelta(days=3))
                elif op == "revoke":
                    batches = list(QuotaBatch.objects.filter(customer=customer, state="active")
                                   .order_by("created_at"))
                    if batches:
                        batch_revoke(batch=batches[arg % len(batches)])
                elif op == "advance":
                    now += timedelta(days=arg)
            except expected_errors:
                pass
            balance = balance_get(customer=customer, feature="reports")
            assert balance.remaining is not None and balance.remaining >= 0


# --- Spend order primitives


def test_contiguous_end() -> None:
    now = T0
    day = timedelta(days=1)

    assert contiguous_end([], now) == now
    assert contiguous_end([(now - day, now + day), (now + day, now + 3 * day)], now) == (
        now + 3 * day
    )
    assert contiguous_end([(now - day, now + day), (now + 2 * day, now + 9 * day)],
                          now) == now + day
    assert contiguous_end([(now - day, now + day), (now + day, None)], now) is None
    assert contiguous_end([(now + day, now + 2 * day)], now) == now


def test_debit_spends_soonest_expiry_first_and_splits(catalog: Catalog, alice: Customer) -> None:
    with clock.frozen(T0):
        never = adjustment_create(customer=alice, product_key="reports", amount=5,
                                  reason="a").batches[0]
        late = adjustment_create(customer=alice, product_key="reports", amount=2, reason="b",
                                 expires_at=T0 + timedelta(days=9)).batches[0]
        soon = adjustment_create(customer=alice, product_key="reports", amount=1, reason="c",
                                 expires_at=T0 + timedelta(days=1)).batches[0]
        with transaction.atomic():
            spent = debit(alice.pk, "Report_Generation", 4, T0, action_type="usage")
            short = debit(alice.pk, "Report_Generation", 5, T0, action_type="usage")

    assert spent.total == 8
    assert [(e.batch_id, e.amount) for e in spent.entries] == [
        (soon.pk, 1), (late.pk, 2), (never.pk, 1)
    ]
    assert short.total == 4 and short.entries == []
    remaining = dict(QuotaBatch.objects.filter(customer=alice).values_list("pk", "remaining"))
    assert remaining == {soon.pk: 0, late.pk: 0, never.pk: 4}
    assert QuotaBatch.objects.get(pk=soon.pk).state == "exhausted"
