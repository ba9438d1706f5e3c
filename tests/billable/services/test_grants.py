"""Grants (bonus, manual, referral), adjustments and batch revocation."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from billable import clock, signals
from billable.errors import (
    BatchNotActive,
    InactiveOffer,
    InactiveProduct,
    InsufficientQuota,
    NotAQuantityProduct,
    QuotaExhausted,
    UnknownProduct,
    UnknownSku,
)
from billable.models import (
    Adjustment,
    Customer,
    Direction,
    Grant,
    LedgerEntry,
    Offer,
    Product,
    QuotaBatch,
)
from billable.selectors import balance_get, offer_for_grant
from billable.services.catalog import ItemSpec, offer_create, offer_update, product_update
from billable.services.grants import (
    adjustment_create,
    batch_revoke,
    offer_grant,
)
from billable.services.quota import quota_consume
from billing_platform.core.errors import ValidationFailed
from tests.support.billing import assert_ledger_invariant, grant, remaining_of
from tests.support.signals import captured

Catalog = dict[str, Product | Offer]
T0 = datetime(2024, 1, 31, 10, 0, tzinfo=UTC)
FAR = datetime(2099, 1, 1, tzinfo=UTC)


def _bundle() -> Offer:
    return offer_create(
        sku="bundle", name="Bundle", price=Decimal("25.00"), currency="USD",
        items=[ItemSpec("reports", 10, "days", 30), ItemSpec("pro", 1, "months", 1),
               ItemSpec("unl", 1)],
    )


# --- Grants


@pytest.mark.parametrize("kind", ["bonus", "manual", "referral"])
def test_grant_creates_one_batch_per_offer_item(
    catalog: Catalog, alice: Customer, kind: str
) -> None:
    offer = _bundle()

    with clock.frozen(T0):
        result = offer_grant(customer=alice, offer=offer, kind=kind, reason="welcome",
                             actor="key-9")

    stored = Grant.objects.get(pk=result.grant.pk)
    assert (stored.sku, stored.kind, stored.reason, stored.actor) == (
        "BUNDLE", kind, "welcome", "key-9"
    )
    rows = {
        b.product.key: (b.initial, b.remaining, b.source, b.grant_id, b.state)
        for b in QuotaBatch.objects.select_related("product").filter(customer=alice)
    }
    assert rows == {
        "REPORTS": (10, 10, kind, stored.pk, "active"),
        "PRO": (1, 1, kind, stored.pk, "active"),
        "UNL": (1, 1, kind, stored.pk, "active"),
    }
    credits = LedgerEntry.objects.filter(direction=Direction.CREDIT)
    assert {(e.action_type, e.action_id, e.actor) for e in credits} == {
        (f"grant.{kind}", str(stored.pk), "key-9")
    }
    assert credits.count() == 3
    assert_ledger_invariant(alice)


def test_grant_expiries_one_period_from_now(catalog: Catalog, alice: Customer) -> None:
    with clock.frozen(T0):
        result = offer_grant(customer=alice, offer=_bundle(), kind="bonus")

    ends = {b.product.key: (b.valid_from, b.expires_at) for b in result.batches}
    assert ends == {
        "REPORTS": (T0, T0 + timedelta(days=30)),
        "PRO": (T0, datetime(2024, 2, 29, 10, 0, tzinfo=UTC)),
        "UNL": (T0, None),
    }


def test_quantity_without_period_never_expires(catalog: Catalog, alice: Customer) -> None:
    with clock.frozen(T0):
        batch = grant(alice, "reports_5_forever").batches[0]

    assert (batch.initial, batch.expires_at) == (5, None)


def test_calendar_month_grant_from_january_31(catalog: Catalog, alice: Customer) -> None:
    offer_create(sku="reports_month", name="m", price=Decimal("1.00"), currency="USD",
                 items=[ItemSpec("reports", 3, "months", 1)])

    with clock.frozen(datetime(2023, 1, 31, 8, tzinfo=UTC)):
        plain = grant(alice, "reports_month").batches[0]
    with clock.frozen(datetime(2024, 1, 31, 8, tzinfo=UTC)):
        leap = grant(alice, "reports_month").batches[0]

    assert plain.expires_at == datetime(2023, 2, 28, 8, tzinfo=UTC)
    assert leap.expires_at == datetime(2024, 2, 29, 8, tzinfo=UTC)


def test_period_renewal_extends_from_current_access_end(
    catalog: Catalog, alice: Customer
) -> None:
    with clock.frozen(T0):
        first = grant(alice, "pro_month").batches[0]
    with clock.frozen(T0 + timedelta(days=10)):
        second = grant(alice, "pro_month").batches[0]
        third = grant(alice, "pro_month").batches[0]

    assert (first.valid_from, first.expires_at) == (T0, datetime(2024, 2, 29, 10, tzinfo=UTC))
    assert (second.valid_from, second.expires_at) == (
        first.expires_at, datetime(2024, 3, 29, 10, tzinfo=UTC)
    )
    assert (third.valid_from, third.expires_at) == (
        second.expires_at, datetime(2024, 4, 29, 10, tzinfo=UTC)
    )


def test_period_renewal_after_access_ended_starts_now(catalog: Catalog, alice: Customer) -> None:
    later = datetime(2024, 6, 1, tzinfo=UTC)
    with clock.frozen(T0):
        grant(alice, "pro_month")
    with clock.frozen(later):
        renewal = grant(alice, "pro_month").batches[0]

    assert (renewal.valid_from, renewal.expires_at) == (later, datetime(2024, 7, 1, tzinfo=UTC))


def test_period_renewal_ignores_revoked_access(catalog: Catalog, alice: Customer) -> None:
    with clock.frozen(T0):
        batch_revoke(batch=grant(alice, "pro_month").batches[0])
        renewal = grant(alice, "pro_month").batches[0]

    assert renewal.valid_from == T0


def test_period_renewal_of_another_customer_is_independent(
    catalog: Catalog, alice: Customer, bob: Customer
) -> None:
    with clock.frozen(T0):
        grant(bob, "pro_month")
        own = grant(alice, "pro_month").batches[0]

    assert own.valid_from == T0


@pytest.mark.parametrize("kind", ["bonus", "manual"])
def test_expires_at_overrides_for_bonus_and_manual(
    catalog: Catalog, alice: Customer, kind: str
) -> None:
    until = T0 + timedelta(days=3)

    with clock.frozen(T0):
        batches = offer_grant(customer=alice, offer=_bundle(), kind=kind, expires_at=until).batches

    assert {(b.valid_from, b.expires_at) for b in batches} == {(T0, until)}


def test_expires_at_ignored_for_referral(catalog: Catalog, alice: Customer) -> None:
    with clock.frozen(T0):
        batch = offer_grant(
            customer=alice, offer=offer_for_grant("reports_10"), kind="referral",
            expires_at=T0 + timedelta(days=3),
        ).batches[0]

    assert batch.expires_at == T0 + timedelta(days=30)


def test_grant_created_once_per_grant(catalog: Catalog, alice: Customer) -> None:
    with captured(signals.grant_created) as calls:
        result = offer_grant(customer=alice, offer=_bundle(), kind="bonus")

    assert len(calls) == 1
    assert calls[0]["grant"].pk == result.grant.pk
    assert calls[0]["customer"].pk == alice.pk
    assert [b.pk for b in calls[0]["batches"]] == [b.pk for b in result.batches]


def test_unknown_kind_is_refused(catalog: Catalog, alice: Customer) -> None:
    with pytest.raises(ValidationFailed):
        offer_grant(customer=alice, offer=offer_for_grant("reports_10"), kind="gift")

    assert not Grant.objects.exists() and not QuotaBatch.objects.exists()


def test_unknown_sku(catalog: Catalog) -> None:
    with pytest.raises(UnknownSku) as exc:
        offer_for_grant("nothing_here")

    assert exc.value.code == "unknown_sku" and exc.value.status == 422


def test_inactive_offer_cannot_be_granted(catalog: Catalog) -> None:
    offer_update(offer=catalog["REPORTS_10"], is_active=False)  # type: ignore[arg-type]

    with pytest.raises(InactiveOffer) as exc:
        offer_for_grant("reports_10")

    assert exc.value.code == "inactive_offer" and exc.value.status == 422


def test_offer_with_inactive_product_cannot_be_granted(catalog: Catalog) -> None:
    product_update(product=catalog["PRO"], is_active=False)  # type: ignore[arg-type]

    with pytest.raises(InactiveProduct) as exc:
        offer_for_grant("Pro_Month")

    assert exc.value.code == "inactive_product" and exc.value.status == 422
    assert offer_for_grant("reports_10").sku == "REPORTS_10"


@pytest.mark.parametrize("deactivate", ["offer", "product"])
def test_offer_grant_refuses_an_offer_deactivated_meanwhile(
    catalog: Catalog, alice: Customer, deactivate: str
) -> None:
    offer = offer_for_grant("pro_month")
    if deactivate == "offer":
        offer_update(offer=offer, is_active=False)
    else:
        product_update(product=catalog["PRO"], is_active=False)  # type: ignore[arg-type]

    with pytest.raises((InactiveOffer, InactiveProduct)):
        offer_grant(customer=alice, offer=offer, kind="manual")

    assert not QuotaBatch.objects.exists() and not Grant.objects.exists()


# --- Adjustments


def test_adjustment_credit_is_a_new_batch(catalog: Catalog, alice: Customer) -> None:
    with clock.frozen(T0):
        result = adjustment_create(customer=alice, product_key="Reports", amount=7,
                                   reason="goodwill", actor="admin:1",
                                   expires_at=T0 + timedelta(days=2))

    adjustment = Adjustment.objects.get()
    [batch] = result.batches
    assert (adjustment.amount, adjustment.reason, adjustment.actor) == (7, "goodwill", "admin:1")
    assert (batch.initial, batch.remaining, batch.source, batch.adjustment_id) == (
        7, 7, "adjustment", adjustment.pk
    )
    assert (batch.valid_from, batch.expires_at) == (T0, T0 + timedelta(days=2))
    entry = LedgerEntry.objects.get(batch=batch)
    assert (entry.direction, entry.amount, entry.action_type, entry.action_id) == (
        "credit", 7, "adjustment", str(adjustment.pk)
    )


def test_adjustment_debit_soonest_expiry_first(catalog: Catalog, alice: Customer) -> None:
    never = adjustment_create(customer=alice, product_key="reports", amount=5,
                              reason="a").batches[0]
    later = adjustment_create(customer=alice, product_key="reports", amount=5, reason="b",
                              expires_at=FAR).batches[0]
    soon = adjustment_create(customer=alice, product_key="reports", amount=2, reason="c",
                             expires_at=FAR - timedelta(days=300)).batches[0]

    result = adjustment_create(customer=alice, product_key="reports", amount=-4,
                               reason="chargeback")

    assert [remaining_of(b) for b in (soon, later, never)] == [0, 3, 5]
    assert [b.pk for b in result.batches] == [soon.pk, later.pk]
    debits = LedgerEntry.objects.filter(direction=Direction.DEBIT, action_type="adjustment")
    assert sorted(d.amount for d in debits) == [2, 2]
    assert {d.metadata["reason"] for d in debits} == {"chargeback"}
    assert_ledger_invariant(alice)


def test_adjustment_debit_skips_unusable_batches(catalog: Catalog, alice: Customer) -> None:
    with clock.frozen(T0):
        adjustment_create(customer=alice, product_key="reports", amount=5, reason="a",
                          expires_at=T0 + timedelta(hours=1))
    usable = adjustment_create(customer=alice, product_key="reports", amount=5,
                               reason="b").batches[0]

    with pytest.raises(InsufficientQuota):
        adjustment_create(customer=alice, product_key="reports", amount=-6, reason="x")
    adjustment_create(customer=alice, product_key="reports", amount=-5, reason="x")

    assert remaining_of(usable) == 0


def test_adjustment_debit_of_too_many_units_changes_nothing(
    catalog: Catalog, alice: Customer
) -> None:
    batch = grant(alice, "reports_10").batches[0]

    with pytest.raises(InsufficientQuota) as exc:
        adjustment_create(customer=alice, product_key="reports", amount=-11, reason="x")

    assert exc.value.code == "insufficient_quota" and exc.value.status == 402
    assert exc.value.extra["remaining"] == 10
    assert remaining_of(batch) == 10
    assert not Adjustment.objects.exists()
    assert not LedgerEntry.objects.filter(direction=Direction.DEBIT).exists()


@pytest.mark.parametrize("key", ["pro", "unl"])
def test_adjustments_only_for_quantity_products(
    catalog: Catalog, alice: Customer, key: str
) -> None:
    with pytest.raises(NotAQuantityProduct) as exc:
        adjustment_create(customer=alice, product_key=key, amount=1, reason="x")

    assert exc.value.code == "not_a_quantity_product" and exc.value.status == 422
    assert not Adjustment.objects.exists()


def test_adjustment_of_an_unknown_product(catalog: Catalog, alice: Customer) -> None:
    with pytest.raises(UnknownProduct):
        adjustment_create(customer=alice, product_key="ghost", amount=1, reason="x")


@pytest.mark.parametrize(("amount", "reason"), [(0, "x"), (3, ""), (3, "   ")])
def test_adjustment_needs_an_amount_and_a_reason(
    catalog: Catalog, alice: Customer, amount: int, reason: str
) -> None:
    with pytest.raises(ValidationFailed):
        adjustment_create(customer=alice, product_key="reports", amount=amount, reason=reason)

    assert not Adjustment.objects.exists() and not QuotaBatch.objects.exists()


# --- Revocation


def test_revoke_debits_what_remained(catalog: Catalog, alice: Customer) -> None:
    batch = grant(alice, "reports_10").batches[0]
    quota_consume(customer=alice, feature="reports", amount=3)

    revoked = batch_revoke(batch=batch, reason="fraud", actor="admin:2")

    assert (revoked.state, revoked.remaining) == ("revoked", 0)
    entry = LedgerEntry.objects.get(batch=batch, action_type="revoke")
    assert (entry.direction, entry.amount, entry.actor, entry.metadata) == (
        "debit", 7, "admin:2", {"reason": "fraud"}
    )
    assert balance_get(customer=alice, feature="reports").remaining == 0
    with pytest.raises(QuotaExhausted):
        quota_consume(customer=alice, feature="reports")
    assert_ledger_invariant(alice)


def test_revoke_twice_is_batch_not_active(catalog: Catalog, alice: Customer) -> None:
    batch = grant(alice, "reports_10").batches[0]
    batch_revoke(batch=batch)
    entries = LedgerEntry.objects.count()

    with pytest.raises(BatchNotActive) as exc:
        batch_revoke(batch=batch)

    assert exc.value.code == "batch_not_active" and exc.value.status == 409
    assert LedgerEntry.objects.count() == entries


def test_revoke_period_access(catalog: Catalog, alice: Customer) -> None:
    batch = grant(alice, "pro_month").batches[0]

    batch_revoke(batch=batch)

    assert balance_get(customer=alice, feature="pro").can_use is False
    assert_ledger_invariant(alice)
