"""Holds: reserve at once, commit or release, return units to their batches, expire."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from billable import clock, signals
from billable.errors import HoldNotActive, InsufficientQuota, QuotaExhausted
from billable.models import (
    Customer,
    Direction,
    Hold,
    LedgerEntry,
    Offer,
    Product,
    QuotaBatch,
    Usage,
)
from billable.selectors import balance_get
from billable.services.grants import batch_revoke
from billable.services.holds import hold_commit, hold_create, hold_release, holds_expire_due
from billing_platform.core.errors import ValidationFailed
from tests.support.billing import assert_ledger_invariant, credit, grant, remaining_of
from tests.support.signals import captured, connected

Catalog = dict[str, Product | Offer]
T0 = datetime(2025, 5, 1, 12, 0, tzinfo=UTC)
FAR = datetime(2099, 1, 1, tzinfo=UTC)


def _hold_entries(hold: Hold) -> list[tuple[str, str, int, Any]]:
    return list(
        LedgerEntry.objects.filter(hold=hold)
        .order_by("id")
        .values_list("direction", "action_type", "amount", "batch_id")
    )


def _remaining(customer: Customer) -> int | None:
    return balance_get(customer=customer, feature="reports").remaining


# --- Reserve


def test_reserve_debits_at_once(catalog: Catalog, alice: Customer) -> None:
    with clock.frozen(T0):
        batch = grant(alice, "reports_10").batches[0]
        hold = hold_create(customer=alice, feature="report_generation", amount=4,
                           ttl_seconds=120, metadata={"job": 1}, actor="key-1")

    stored = Hold.objects.get(pk=hold.pk)
    assert (stored.status, stored.amount, stored.unmetered, stored.metadata) == (
        "active", 4, False, {"job": 1}
    )
    assert stored.expires_at == T0 + timedelta(seconds=120)
    assert remaining_of(batch) == 6
    assert _hold_entries(hold) == [("debit", "hold", 4, batch.pk)]
    with clock.frozen(T0):
        assert _remaining(alice) == 6
    assert not Usage.objects.exists()
    assert_ledger_invariant(alice)


def test_reserve_follows_the_spend_order(catalog: Catalog, alice: Customer) -> None:
    never = credit(alice, 10, None)
    soon = credit(alice, 2, FAR)

    hold = hold_create(customer=alice, feature="reports", amount=5)

    assert _hold_entries(hold) == [("debit", "hold", 2, soon.pk), ("debit", "hold", 3, never.pk)]


def test_reserve_too_much_is_insufficient_quota(catalog: Catalog, alice: Customer) -> None:
    batch = grant(alice, "reports_10").batches[0]

    with pytest.raises(InsufficientQuota) as exc:
        hold_create(customer=alice, feature="reports", amount=11)

    assert exc.value.extra["remaining"] == 10
    assert remaining_of(batch) == 10
    assert not Hold.objects.exists()


def test_reserve_nothing_covered_is_quota_exhausted(catalog: Catalog, alice: Customer) -> None:
    with pytest.raises(QuotaExhausted):
        hold_create(customer=alice, feature="reports", amount=1)

    assert not Hold.objects.exists()


@pytest.mark.parametrize("amount", [0, -1])
def test_reserve_amount_below_one_is_refused(
    catalog: Catalog, alice: Customer, amount: int
) -> None:
    grant(alice, "reports_10")

    with pytest.raises(ValidationFailed):
        hold_create(customer=alice, feature="reports", amount=amount)

    assert not Hold.objects.exists()


def test_access_reserves_nothing(catalog: Catalog, alice: Customer) -> None:
    batch = grant(alice, "pro_month").batches[0]

    hold = hold_create(customer=alice, feature="priority_support", amount=50)
    committed = hold_commit(hold=hold, amount=30)

    assert hold.unmetered is True
    assert _hold_entries(hold) == []
    assert remaining_of(batch) == 1
    assert (committed.status, committed.committed_amount) == ("committed", 30)
    assert Usage.objects.get().amount == 30


def test_release_under_access_returns_nothing(catalog: Catalog, alice: Customer) -> None:
    grant(alice, "unl_forever")

    hold = hold_release(hold=hold_create(customer=alice, feature="exports", amount=5))

    assert hold.status == "released"
    assert not LedgerEntry.objects.filter(hold=hold).exists()


# --- Commit and release


def test_commit_keeps_amount_and_credits_the_rest_to_its_batches(
    catalog: Catalog, alice: Customer
) -> None:
    # given a hold drawn from two batches (2 + 3)
    never = credit(alice, 10, None)
    soon = credit(alice, 2, FAR)
    other = credit(alice, 4, None)
    hold = hold_create(customer=alice, feature="reports", amount=5)
    assert remaining_of(other) == 4

    # when
    committed = hold_commit(hold=hold, amount=1, actor="key-2")

    # then 4 units return, never to a batch beyond what it gave
    assert (committed.status, committed.committed_amount) == ("committed", 1)
    credits = [e for e in _hold_entries(hold) if e[0] == "credit"]
    assert {(e[1], e[3]): e[2] for e in credits} == {
        ("hold.return", never.pk): 3, ("hold.return", soon.pk): 1
    }
    assert (remaining_of(soon), remaining_of(never), remaining_of(other)) == (1, 10, 4)
    usage = Usage.objects.get()
    assert (usage.amount, usage.action_type, usage.action_id) == (1, "hold", str(hold.pk))
    assert committed.usage_id == usage.pk
    assert _remaining(alice) == 15
    assert_ledger_invariant(alice)


def test_commit_without_amount_keeps_everything(catalog: Catalog, alice: Customer) -> None:
    batch = grant(alice, "reports_10").batches[0]
    hold = hold_create(customer=alice, feature="reports", amount=4)

    committed = hold_commit(hold=hold)

    assert committed.committed_amount == 4
    assert remaining_of(batch) == 6
    assert [e[0] for e in _hold_entries(hold)] == ["debit"]


def test_commit_zero_returns_everything(catalog: Catalog, alice: Customer) -> None:
    batch = grant(alice, "reports_10").batches[0]
    hold = hold_create(customer=alice, feature="reports", amount=4)

    committed = hold_commit(hold=hold, amount=0)

    assert (committed.status, committed.committed_amount, committed.usage_id) == (
        "committed", 0, None
    )
    assert remaining_of(batch) == 10
    assert not Usage.objects.exists()


@pytest.mark.parametrize("amount", [-1, 5])
def test_commit_outside_the_reserved_range_is_refused(
    catalog: Catalog, alice: Customer, amount: int
) -> None:
    grant(alice, "reports_10")
    hold = hold_create(customer=alice, feature="reports", amount=4)

    with pytest.raises(ValidationFailed):
        hold_commit(hold=hold, amount=amount)

    assert Hold.objects.get(pk=hold.pk).status == "active"
    assert _remaining(alice) == 6


def test_release_credits_everything_back(catalog: Catalog, alice: Customer) -> None:
    never = credit(alice, 3, None)
    soon = credit(alice, 2, FAR)
    hold = hold_create(customer=alice, feature="reports", amount=4)
    assert (remaining_of(soon), remaining_of(never)) == (0, 1)
    assert QuotaBatch.objects.get(pk=soon.pk).state == "exhausted"

    released = hold_release(hold=hold)

    assert (released.status, released.committed_amount) == ("released", 0)
    assert (remaining_of(soon), remaining_of(never)) == (2, 3)
    assert QuotaBatch.objects.get(pk=soon.pk).state == "active"
    assert not Usage.objects.exists()
    assert_ledger_invariant(alice)


def test_repeated_commit_returns_the_hold_unchanged(catalog: Catalog, alice: Customer) -> None:
    grant(alice, "reports_10")
    hold = hold_create(customer=alice, feature="reports", amount=4)
    first = hold_commit(hold=hold, amount=3)
    entries = LedgerEntry.objects.count()

    again = hold_commit(hold=hold, amount=1)

    assert (again.status, again.committed_amount, again.usage_id) == (
        "committed", 3, first.usage_id
    )
    assert LedgerEntry.objects.count() == entries
    assert Usage.objects.count() == 1


def test_repeated_release_returns_the_hold_unchanged(catalog: Catalog, alice: Customer) -> None:
    grant(alice, "reports_10")
    hold = hold_create(customer=alice, feature="reports", amount=4)
    hold_release(hold=hold)
    entries = LedgerEntry.objects.count()

    again = hold_release(hold=hold)

    assert again.status == "released"
    assert LedgerEntry.objects.count() == entries
    assert _remaining(alice) == 10


def test_release_after_commit_is_hold_not_active(catalog: Catalog, alice: Customer) -> None:
    grant(alice, "reports_10")
    hold = hold_commit(hold=hold_create(customer=alice, feature="reports", amount=4), amount=2)

    with pytest.raises(HoldNotActive) as exc:
        hold_release(hold=hold)

    assert exc.value.code == "hold_not_active" and exc.value.status == 409
    assert Hold.objects.get(pk=hold.pk).status == "committed"
    assert _remaining(alice) == 8


def test_commit_after_release_is_hold_not_active(catalog: Catalog, alice: Customer) -> None:
    grant(alice, "reports_10")
    hold = hold_release(hold=hold_create(customer=alice, feature="reports", amount=4))

    with pytest.raises(HoldNotActive):
        hold_commit(hold=hold, amount=4)

    assert Hold.objects.get(pk=hold.pk).status == "released"
    assert not Usage.objects.exists()
    assert _remaining(alice) == 10


def test_commit_after_expiry_is_hold_not_active(catalog: Catalog, alice: Customer) -> None:
    with clock.frozen(T0):
        grant(alice, "reports_10")
        hold = hold_create(customer=alice, feature="reports", amount=4, ttl_seconds=60)
    with clock.frozen(T0 + timedelta(minutes=5)):
        holds_expire_due()

    with pytest.raises(HoldNotActive):
        hold_commit(hold=hold)


# --- Batches that changed meanwhile


def test_release_to_a_revoked_batch_debits_again(catalog: Catalog, alice: Customer) -> None:
    batch = grant(alice, "reports_10").batches[0]
    hold = hold_create(customer=alice, feature="reports", amount=4)
    batch_revoke(batch=batch)

    hold_release(hold=hold)

    assert _hold_entries(hold) == [
        ("debit", "hold", 4, batch.pk),
        ("credit", "hold.return", 4, batch.pk),
        ("debit", "revoke", 4, batch.pk),
    ]
    stored = QuotaBatch.objects.get(pk=batch.pk)
    assert (stored.state, stored.remaining) == ("revoked", 0)
    assert _remaining(alice) == 0
    assert_ledger_invariant(alice)


def test_commit_returning_to_a_revoked_batch_debits_again(
    catalog: Catalog, alice: Customer
) -> None:
    batch = grant(alice, "reports_10").batches[0]
    hold = hold_create(customer=alice, feature="reports", amount=4)
    batch_revoke(batch=batch)

    hold_commit(hold=hold, amount=1)

    assert remaining_of(batch) == 0
    assert [e[:3] for e in _hold_entries(hold)][1:] == [
        ("credit", "hold.return", 3), ("debit", "revoke", 3)
    ]


def test_release_to_an_expired_batch_debits_again(catalog: Catalog, alice: Customer) -> None:
    with clock.frozen(T0):
        batch = credit(alice, 10, T0 + timedelta(hours=1))
        hold = hold_create(customer=alice, feature="reports", amount=4, ttl_seconds=86_400)
        usable = credit(alice, 1, None)

    with clock.frozen(T0 + timedelta(hours=2)):
        hold_release(hold=hold)
        after = _remaining(alice)

    assert _hold_entries(hold) == [
        ("debit", "hold", 4, batch.pk),
        ("credit", "hold.return", 4, batch.pk),
        ("debit", "expiry", 4, batch.pk),
    ]
    assert remaining_of(batch) == 6
    assert after == 1 and remaining_of(usable) == 1
    assert_ledger_invariant(alice)


# --- Expiry


def test_holds_expire_due_releases_expired_holds(catalog: Catalog, alice: Customer) -> None:
    with clock.frozen(T0):
        batch = grant(alice, "reports_10").batches[0]
        short = hold_create(customer=alice, feature="reports", amount=3, ttl_seconds=60)
        long = hold_create(customer=alice, feature="reports", amount=2, ttl_seconds=3600)

    with clock.frozen(T0 + timedelta(seconds=59)):
        assert holds_expire_due() == 0
    with captured(signals.hold_released) as calls, clock.frozen(T0 + timedelta(seconds=60)):
        assert holds_expire_due() == 1
        assert holds_expire_due() == 0

    assert Hold.objects.get(pk=short.pk).status == "expired"
    assert Hold.objects.get(pk=long.pk).status == "active"
    assert remaining_of(batch) == 8
    assert [(c["hold"].pk, c["expired"]) for c in calls] == [(short.pk, True)]


def test_expired_hold_stays_reserved_until_the_sweep(catalog: Catalog, alice: Customer) -> None:
    with clock.frozen(T0):
        grant(alice, "reports_10")
        hold = hold_create(customer=alice, feature="reports", amount=3, ttl_seconds=60)

    with clock.frozen(T0 + timedelta(hours=1)):
        assert _remaining(alice) == 7
        holds_expire_due()
        assert _remaining(alice) == 10
    assert Hold.objects.get(pk=hold.pk).status == "expired"


def test_holds_expire_due_respects_the_limit(catalog: Catalog, alice: Customer) -> None:
    with clock.frozen(T0):
        grant(alice, "reports_10")
        for _ in range(3):
            hold_create(customer=alice, feature="reports", amount=1, ttl_seconds=60)

    with clock.frozen(T0 + timedelta(hours=1)):
        assert holds_expire_due(limit=2) == 2
        assert holds_expire_due(limit=2) == 1


# --- Signals


def test_hold_signals(catalog: Catalog, alice: Customer) -> None:
    grant(alice, "reports_10")

    with captured(signals.hold_created) as created, captured(
        signals.hold_committed
    ) as committed, captured(signals.hold_released) as released:
        first = hold_create(customer=alice, feature="reports", amount=2)
        second = hold_create(customer=alice, feature="reports", amount=2)
        hold_commit(hold=first, amount=1)
        hold_commit(hold=first, amount=1)
        hold_release(hold=second)
        hold_release(hold=second)

    assert [c["hold"].pk for c in created] == [first.pk, second.pk]
    assert all(c["customer"].pk == alice.pk for c in created)
    assert [(c["hold"].pk, c["hold"].committed_amount) for c in committed] == [(first.pk, 1)]
    assert [(c["hold"].pk, c["expired"]) for c in released] == [(second.pk, False)]


def test_failing_hold_receiver_rolls_the_reserve_back(catalog: Catalog, alice: Customer) -> None:
    batch = grant(alice, "reports_10").batches[0]

    def receiver(sender: Any, **kwargs: Any) -> None:
        raise RuntimeError("outbox down")

    with connected(signals.hold_created, receiver), pytest.raises(RuntimeError):
        hold_create(customer=alice, feature="reports", amount=4)

    assert remaining_of(batch) == 10
    assert not Hold.objects.exists()
    assert not LedgerEntry.objects.filter(direction=Direction.DEBIT).exists()


def test_a_reservation_crossing_the_threshold_sends_low_and_depleted(
    catalog: Catalog, alice: Customer, in_acme: Any
) -> None:
    from tenants.services import tenant_settings_update

    tenant_settings_update(tenant_id=in_acme.tenant.pk, changes={"low_balance_threshold": 3})
    grant(alice, "reports_10")

    with captured(signals.quota_low) as low, captured(signals.quota_depleted) as depleted:
        hold_create(customer=alice, feature="reports", amount=5)  # 10 -> 5
        assert low == []
        hold_create(customer=alice, feature="reports", amount=3)  # 5 -> 2
        assert [(c["remaining"], c["feature"]) for c in low] == [(2, "reports")]
        assert depleted == []
        hold_create(customer=alice, feature="reports", amount=2)  # 2 -> 0

    assert len(low) == 1
    assert [c["customer"].pk for c in depleted] == [alice.pk]
