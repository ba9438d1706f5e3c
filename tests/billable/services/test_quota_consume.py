"""quota_consume: access coverage, spend order, all-or-nothing, usages, signals."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from billable import clock, signals
from billable.errors import InsufficientQuota, QuotaExhausted
from billable.models import (
    Customer,
    Direction,
    LedgerEntry,
    Offer,
    Product,
    QuotaBatch,
    Usage,
)
from billable.services import ledger
from billable.services.catalog import ItemSpec, offer_create, product_create
from billable.services.grants import adjustment_create
from billable.services.quota import quota_consume
from billing_platform.core.errors import ValidationFailed
from tenants.services import tenant_settings_update
from tests.support.billing import assert_ledger_invariant, credit, grant, remaining_of
from tests.support.signals import captured, connected
from tests.support.tenants import TenantFixture

Catalog = dict[str, Product | Offer]
T0 = datetime(2025, 3, 10, 12, 0, tzinfo=UTC)
FAR = datetime(2099, 1, 1, tzinfo=UTC)


def _debits() -> list[tuple[Any, int]]:
    return list(
        LedgerEntry.objects.filter(direction=Direction.DEBIT)
        .order_by("id")
        .values_list("batch_id", "amount")
    )


def _threshold(tenant: TenantFixture, units: int) -> None:
    tenant_settings_update(tenant_id=tenant.tenant.pk, changes={"low_balance_threshold": units})


# --- Quantity


def test_consume_decrements_quantity(catalog: Catalog, alice: Customer) -> None:
    batch = grant(alice, "reports_10").batches[0]

    result = quota_consume(customer=alice, feature="report_generation", amount=3)

    assert (result.remaining, result.unlimited) == (7, False)
    assert remaining_of(batch) == 7
    assert _debits() == [(batch.pk, 3)]
    assert_ledger_invariant(alice)


def test_amount_defaults_to_one(catalog: Catalog, alice: Customer) -> None:
    grant(alice, "reports_10")

    assert quota_consume(customer=alice, feature="reports").remaining == 9


@pytest.mark.parametrize("amount", [0, -3])
def test_amount_below_one_is_refused(catalog: Catalog, alice: Customer, amount: int) -> None:
    batch = grant(alice, "reports_10").batches[0]

    with pytest.raises(ValidationFailed):
        quota_consume(customer=alice, feature="reports", amount=amount)

    assert remaining_of(batch) == 10
    assert not Usage.objects.exists()


def test_usage_record_and_its_debits(catalog: Catalog, alice: Customer) -> None:
    grant(alice, "reports_10")

    result = quota_consume(
        customer=alice, feature="Report_Generation", amount=2, action_type="report",
        action_id="r-1", metadata={"report": 9}, actor="key-1",
    )

    usage = Usage.objects.get()
    assert usage.pk == result.usage.pk
    assert (usage.customer_id, usage.feature, usage.amount) == (alice.pk, "Report_Generation", 2)
    assert (usage.action_type, usage.action_id, usage.metadata) == ("report", "r-1", {"report": 9})
    debit = LedgerEntry.objects.get(direction=Direction.DEBIT)
    assert (debit.usage_id, debit.action_type, debit.action_id, debit.actor) == (
        usage.pk, "report", "r-1", "key-1"
    )


# --- Access coverage


@pytest.mark.parametrize(("sku", "feature"), [("pro_month", "priority_support"),
                                               ("pro_month", "pro"),
                                               ("unl_forever", "EXPORTS"),
                                               ("unl_forever", "unl")])
def test_access_covers_use_without_decrement(
    catalog: Catalog, alice: Customer, sku: str, feature: str
) -> None:
    batch = grant(alice, sku).batches[0]

    result = quota_consume(customer=alice, feature=feature, amount=50)

    assert (result.remaining, result.unlimited) == (None, True)
    assert Usage.objects.get().amount == 50
    assert _debits() == []
    assert remaining_of(batch) == 1
    assert_ledger_invariant(alice)


def test_access_takes_precedence_over_quantity(catalog: Catalog, alice: Customer) -> None:
    # given a period product also unlocking report_generation
    product_create(key="studio", name="Studio", product_type="period",
                   features=["report_generation"])
    offer_create(sku="studio_week", name="w", price=Decimal("0"), currency="USD",
                 items=[ItemSpec("studio", 1, "days", 7)])
    quantity = grant(alice, "reports_10").batches[0]
    grant(alice, "studio_week")

    # when
    result = quota_consume(customer=alice, feature="report_generation", amount=4)

    # then
    assert result.unlimited is True
    assert remaining_of(quantity) == 10
    assert _debits() == []


def test_expired_access_does_not_cover(catalog: Catalog, alice: Customer) -> None:
    with clock.frozen(T0):
        grant(alice, "pro_month")
    with clock.frozen(T0 + timedelta(days=60)), pytest.raises(QuotaExhausted):
        quota_consume(customer=alice, feature="priority_support")


# --- Spend order


def test_soonest_expiry_first_then_oldest_never_expiring_last(
    catalog: Catalog, alice: Customer
) -> None:
    # given
    with clock.frozen(T0):
        late = credit(alice, 3, T0 + timedelta(days=10))
        never = credit(alice, 5, None)
        soon_old = credit(alice, 2, T0 + timedelta(days=2))
        soon_new = credit(alice, 2, T0 + timedelta(days=2))

        # when
        quota_consume(customer=alice, feature="reports", amount=3)
        first = _debits()
        quota_consume(customer=alice, feature="reports", amount=7)

    # then
    assert first == [(soon_old.pk, 2), (soon_new.pk, 1)]
    assert _debits()[2:] == [(soon_new.pk, 1), (late.pk, 3), (never.pk, 3)]
    assert [remaining_of(b) for b in (soon_old, soon_new, late, never)] == [0, 0, 0, 2]
    assert QuotaBatch.objects.get(pk=soon_old.pk).state == "exhausted"
    assert_ledger_invariant(alice)


def test_one_debit_per_batch_touched(catalog: Catalog, alice: Customer) -> None:
    batches = [credit(alice, 1, None) for _ in range(4)]

    usage = quota_consume(customer=alice, feature="reports", amount=3).usage

    entries = LedgerEntry.objects.filter(usage=usage)
    assert entries.count() == 3
    assert {e.batch_id for e in entries} == {b.pk for b in batches[:3]}
    assert all(e.amount == 1 for e in entries)


def test_every_product_covering_a_name_is_drawn(catalog: Catalog, alice: Customer) -> None:
    product_create(key="extra", name="Extra", product_type="quantity",
                   features=["REPORT_GENERATION"])
    extra = adjustment_create(customer=alice, product_key="extra", amount=2, reason="t",
                              expires_at=None).batches[0]
    reports = credit(alice, 2, None)

    result = quota_consume(customer=alice, feature="report_generation", amount=4)

    assert result.remaining == 0
    assert remaining_of(extra) == remaining_of(reports) == 0


@pytest.mark.parametrize("name", ["report_generation", "REPORT_GENERATION", "Report_Generation",
                                  "reports", "REPORTS", "Reports"])
def test_feature_and_product_key_cover_case_insensitively(
    catalog: Catalog, alice: Customer, name: str
) -> None:
    batch = grant(alice, "reports_10").batches[0]

    quota_consume(customer=alice, feature=name, amount=2)

    assert remaining_of(batch) == 8


# --- All or nothing


def test_too_few_units_is_insufficient_quota_and_changes_nothing(
    catalog: Catalog, alice: Customer
) -> None:
    a = credit(alice, 3, FAR)
    b = credit(alice, 1, None)

    with pytest.raises(InsufficientQuota) as exc:
        quota_consume(customer=alice, feature="reports", amount=5)

    assert exc.value.code == "insufficient_quota" and exc.value.status == 402
    assert exc.value.extra["remaining"] == 4
    assert (remaining_of(a), remaining_of(b)) == (3, 1)
    assert not Usage.objects.exists()
    assert _debits() == []


def test_no_units_at_all_is_quota_exhausted(catalog: Catalog, alice: Customer) -> None:
    with pytest.raises(QuotaExhausted) as exc:
        quota_consume(customer=alice, feature="reports")

    assert exc.value.code == "quota_exhausted" and exc.value.status == 402
    assert exc.value.extra["remaining"] == 0
    assert not Usage.objects.exists()


def test_spent_batches_are_quota_exhausted(catalog: Catalog, alice: Customer) -> None:
    credit(alice, 2, None)
    quota_consume(customer=alice, feature="reports", amount=2)

    with pytest.raises(QuotaExhausted):
        quota_consume(customer=alice, feature="reports")


def test_a_name_nothing_covers_is_quota_exhausted(catalog: Catalog, alice: Customer) -> None:
    grant(alice, "reports_10")
    grant(alice, "unl_forever")

    with pytest.raises(QuotaExhausted) as exc:
        quota_consume(customer=alice, feature="teleportation")

    assert exc.value.extra["remaining"] == 0


def test_other_customers_batches_do_not_cover(
    catalog: Catalog, alice: Customer, bob: Customer
) -> None:
    grant(bob, "reports_10")
    grant(bob, "unl_forever")

    with pytest.raises(QuotaExhausted):
        quota_consume(customer=alice, feature="reports")
    with pytest.raises(QuotaExhausted):
        quota_consume(customer=alice, feature="exports")


# --- Usability boundaries


def test_expiry_exactly_now_is_not_usable(catalog: Catalog, alice: Customer) -> None:
    end = T0 + timedelta(hours=1)
    with clock.frozen(T0):
        batch = credit(alice, 5, end)

    with clock.frozen(end - timedelta(microseconds=1)):
        assert quota_consume(customer=alice, feature="reports").remaining == 4
    with clock.frozen(end), pytest.raises(QuotaExhausted):
        quota_consume(customer=alice, feature="reports")
    assert remaining_of(batch) == 4


def test_access_expiring_exactly_now_does_not_cover(catalog: Catalog, alice: Customer) -> None:
    with clock.frozen(T0):
        end = grant(alice, "pro_month").batches[0].expires_at
    assert end is not None

    with clock.frozen(end - timedelta(microseconds=1)):
        assert quota_consume(customer=alice, feature="pro").unlimited is True
    with clock.frozen(end), pytest.raises(QuotaExhausted):
        quota_consume(customer=alice, feature="pro")


def test_valid_from_in_the_future_is_not_usable(catalog: Catalog, alice: Customer) -> None:
    start = T0 + timedelta(days=1)
    reports = catalog["REPORTS"]
    with clock.frozen(T0):
        batch = ledger.batch_create(
            customer_id=alice.pk, product_id=reports.pk, product_type="quantity", units=5,
            valid_from=start, expires_at=None, source="manual", action_type="test",
        )
        with pytest.raises(QuotaExhausted):
            quota_consume(customer=alice, feature="reports")

    with clock.frozen(start):
        assert quota_consume(customer=alice, feature="reports").remaining == 4
    assert remaining_of(batch) == 4


def test_future_access_does_not_cover_yet(catalog: Catalog, alice: Customer) -> None:
    start = T0 + timedelta(days=1)
    with clock.frozen(T0):
        ledger.batch_create(
            customer_id=alice.pk, product_id=catalog["UNL"].pk, product_type="unlimited",
            units=1, valid_from=start, expires_at=None, source="manual", action_type="test",
        )
        with pytest.raises(QuotaExhausted):
            quota_consume(customer=alice, feature="exports")
    with clock.frozen(start):
        assert quota_consume(customer=alice, feature="exports").unlimited is True


@pytest.mark.parametrize("state", ["revoked", "expired"])
def test_inactive_batches_are_not_usable(
    catalog: Catalog, alice: Customer, state: str
) -> None:
    batch = credit(alice, 5, None)
    QuotaBatch.objects.filter(pk=batch.pk).update(state=state)

    with pytest.raises(QuotaExhausted):
        quota_consume(customer=alice, feature="reports")


# --- Signals


def test_quota_consumed_once_per_consume(catalog: Catalog, alice: Customer) -> None:
    credit(alice, 2, None)
    credit(alice, 2, None)

    with captured(signals.quota_consumed) as calls:
        result = quota_consume(customer=alice, feature="reports", amount=3)

    assert len(calls) == 1
    assert calls[0]["usage"].pk == result.usage.pk
    assert calls[0]["customer"].pk == alice.pk
    assert (calls[0]["remaining"], calls[0]["unlimited"]) == (1, False)


def test_quota_consumed_for_access(catalog: Catalog, alice: Customer) -> None:
    grant(alice, "unl_forever")

    with captured(signals.quota_consumed) as calls:
        quota_consume(customer=alice, feature="exports")

    assert [(c["remaining"], c["unlimited"]) for c in calls] == [(None, True)]


def test_no_signal_when_consume_fails(catalog: Catalog, alice: Customer) -> None:
    credit(alice, 1, None)

    with captured(signals.quota_consumed) as consumed, captured(
        signals.transaction_created
    ) as entries, pytest.raises(InsufficientQuota):
        quota_consume(customer=alice, feature="reports", amount=2)

    assert consumed == [] and entries == []


def test_transaction_created_once_per_debit(catalog: Catalog, alice: Customer) -> None:
    credit(alice, 1, None)
    credit(alice, 5, None)

    with captured(signals.transaction_created) as calls:
        quota_consume(customer=alice, feature="reports", amount=3)

    assert sorted(c["entry"].amount for c in calls) == [1, 2]
    assert all(c["entry"].direction == "debit" for c in calls)


def test_quota_low_once_when_crossing_the_threshold(
    catalog: Catalog, alice: Customer, in_acme: TenantFixture
) -> None:
    _threshold(in_acme, 3)
    grant(alice, "reports_10")

    with captured(signals.quota_low) as low, captured(signals.quota_depleted) as depleted:
        quota_consume(customer=alice, feature="reports", amount=5)   # 10 -> 5
        assert low == []
        quota_consume(customer=alice, feature="reports", amount=2)   # 5 -> 3
        assert len(low) == 1
        quota_consume(customer=alice, feature="reports", amount=1)   # 3 -> 2
        assert len(low) == 1 and depleted == []
        quota_consume(customer=alice, feature="reports", amount=2)   # 2 -> 0

    assert len(low) == 1
    assert (low[0]["remaining"], low[0]["threshold"], low[0]["feature"]) == (3, 3, "reports")
    assert low[0]["customer"].pk == alice.pk
    assert len(depleted) == 1 and depleted[0]["customer"].pk == alice.pk


def test_one_consume_from_above_threshold_to_zero_sends_both(
    catalog: Catalog, alice: Customer, in_acme: TenantFixture
) -> None:
    _threshold(in_acme, 3)
    grant(alice, "reports_10")

    with captured(signals.quota_low) as low, captured(signals.quota_depleted) as depleted:
        quota_consume(customer=alice, feature="reports", amount=10)

    assert [c["remaining"] for c in low] == [0]
    assert len(depleted) == 1


def test_quota_low_off_when_threshold_is_zero(
    catalog: Catalog, alice: Customer, in_acme: TenantFixture
) -> None:
    _threshold(in_acme, 0)
    grant(alice, "reports_10")

    with captured(signals.quota_low) as low, captured(signals.quota_depleted) as depleted:
        quota_consume(customer=alice, feature="reports", amount=9)
        quota_consume(customer=alice, feature="reports", amount=1)

    assert low == []
    assert len(depleted) == 1


def test_quota_low_counts_every_batch_of_the_name(
    catalog: Catalog, alice: Customer, in_acme: TenantFixture
) -> None:
    _threshold(in_acme, 3)
    credit(alice, 2, FAR)
    credit(alice, 5, None)

    with captured(signals.quota_low) as low, captured(signals.quota_depleted) as depleted:
        quota_consume(customer=alice, feature="reports", amount=2)   # 7 -> 5, batch 1 empty
        quota_consume(customer=alice, feature="reports", amount=2)   # 5 -> 3

    assert [c["remaining"] for c in low] == [3]
    assert depleted == []


def test_access_never_sends_low_or_depleted(
    catalog: Catalog, alice: Customer, in_acme: TenantFixture
) -> None:
    _threshold(in_acme, 3)
    grant(alice, "unl_forever")

    with captured(signals.quota_low) as low, captured(signals.quota_depleted) as depleted:
        quota_consume(customer=alice, feature="exports", amount=100)

    assert low == [] and depleted == []


def test_signal_receiver_sees_the_usage_and_debits(catalog: Catalog, alice: Customer) -> None:
    grant(alice, "reports_10")
    seen: list[tuple[bool, int]] = []

    def receiver(sender: Any, usage: Usage, **kwargs: Any) -> None:
        seen.append((
            Usage.objects.filter(pk=usage.pk).exists(),
            LedgerEntry.objects.filter(usage_id=usage.pk, direction=Direction.DEBIT).count(),
        ))

    with connected(signals.quota_consumed, receiver):
        quota_consume(customer=alice, feature="reports", amount=2)

    assert seen == [(True, 1)]


@pytest.mark.parametrize("signal_name", ["quota_consumed", "quota_depleted",
                                         "transaction_created"])
def test_failing_receiver_rolls_the_consume_back(
    catalog: Catalog, alice: Customer, signal_name: str
) -> None:
    batch = grant(alice, "reports_10").batches[0]
    entries = LedgerEntry.objects.count()

    def receiver(sender: Any, **kwargs: Any) -> None:
        raise RuntimeError("outbox down")

    with connected(getattr(signals, signal_name), receiver), pytest.raises(RuntimeError):
        quota_consume(customer=alice, feature="reports", amount=10)

    assert remaining_of(batch) == 10
    assert QuotaBatch.objects.get(pk=batch.pk).state == "active"
    assert not Usage.objects.exists()
    assert LedgerEntry.objects.count() == entries
