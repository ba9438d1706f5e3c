"""balance_get and balance_list: usable batches only, access, holds, one item per name."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from billable import clock
from billable.models import Customer, Offer, Product, QuotaBatch
from billable.selectors import balance_get, balance_list
from billable.services import ledger
from billable.services.grants import adjustment_create, batch_revoke
from billable.services.holds import hold_create
from billable.services.quota import quota_consume
from tests.support.billing import credit, grant

Catalog = dict[str, Product | Offer]
T0 = datetime(2024, 1, 31, 9, 30, tzinfo=UTC)
FAR = datetime(2099, 1, 1, tzinfo=UTC)


def test_remaining_sums_usable_quantity_batches(catalog: Catalog, alice: Customer) -> None:
    grant(alice, "reports_10")
    grant(alice, "reports_5_forever")

    balance = balance_get(customer=alice, feature="report_generation")

    assert (balance.can_use, balance.remaining, balance.unlimited, balance.expires_at) == (
        True, 15, False, None
    )
    assert balance_get(customer=alice, feature="REPORTS").remaining == 15


def test_remaining_ignores_unusable_batches(catalog: Catalog, alice: Customer) -> None:
    # given one usable batch and one of each unusable kind
    with clock.frozen(T0):
        exhausted = credit(alice, 2, None)
        quota_consume(customer=alice, feature="reports", amount=2)
        assert QuotaBatch.objects.get(pk=exhausted.pk).state == "exhausted"
        credit(alice, 7, T0 + timedelta(hours=1))  # expired by the read below
        ledger.batch_create(
            customer_id=alice.pk, product_id=catalog["REPORTS"].pk, product_type="quantity",
            units=11, valid_from=T0 + timedelta(days=30), expires_at=None, source="manual",
            action_type="test",
        )
        revoked = credit(alice, 13, None)
        batch_revoke(batch=revoked)
        credit(alice, 4, FAR)

    # when / then
    with clock.frozen(T0 + timedelta(hours=2)):
        assert balance_get(customer=alice, feature="reports").remaining == 4


def test_expiry_boundary_agrees_with_consume(catalog: Catalog, alice: Customer) -> None:
    end = T0 + timedelta(days=1)
    with clock.frozen(T0):
        credit(alice, 3, end)

    with clock.frozen(end - timedelta(microseconds=1)):
        assert balance_get(customer=alice, feature="reports").remaining == 3
    with clock.frozen(end):
        balance = balance_get(customer=alice, feature="reports")
    assert (balance.can_use, balance.remaining) == (False, 0)


def test_nothing_held_is_zero_and_cannot_use(catalog: Catalog, alice: Customer) -> None:
    balance = balance_get(customer=alice, feature="reports")

    assert (balance.can_use, balance.remaining, balance.unlimited) == (False, 0, False)
    assert balance.message


def test_unknown_customer_has_no_balance(catalog: Catalog) -> None:
    balance = balance_get(customer=None, feature="reports")

    assert (balance.can_use, balance.remaining, balance.unlimited) == (False, 0, False)
    assert balance_list(customer=None) == []


def test_name_lookup_is_case_insensitive(catalog: Catalog, alice: Customer) -> None:
    grant(alice, "reports_10")

    for name in ("reports", "Reports", "REPORT_GENERATION", "report_generation"):
        assert balance_get(customer=alice, feature=name).remaining == 10
    assert balance_get(customer=alice, feature="other").remaining == 0


def test_period_access_is_unlimited_until_its_end(catalog: Catalog, alice: Customer) -> None:
    with clock.frozen(T0):
        grant(alice, "pro_month")
        balance = balance_get(customer=alice, feature="priority_support")

    assert (balance.can_use, balance.remaining, balance.unlimited) == (True, None, True)
    assert balance.expires_at == datetime(2024, 2, 29, 9, 30, tzinfo=UTC)


def test_period_expires_at_includes_renewals_granted_in_advance(
    catalog: Catalog, alice: Customer
) -> None:
    with clock.frozen(T0):
        grant(alice, "pro_month")
        grant(alice, "pro_month")
        grant(alice, "pro_month")
        balance = balance_get(customer=alice, feature="pro")

    # Jan 31 -> Feb 29 -> Mar 29 -> Apr 29 (each month added to the previous end)
    assert balance.expires_at == datetime(2024, 4, 29, 9, 30, tzinfo=UTC)
    assert balance.remaining is None and balance.unlimited is True


def test_period_expires_at_stops_at_a_gap(catalog: Catalog, alice: Customer) -> None:
    with clock.frozen(T0):
        first_end = grant(alice, "pro_month").batches[0].expires_at
        assert first_end is not None
        ledger.batch_create(
            customer_id=alice.pk, product_id=catalog["PRO"].pk, product_type="period", units=1,
            valid_from=first_end + timedelta(days=1), expires_at=first_end + timedelta(days=40),
            source="manual", action_type="test",
        )
        balance = balance_get(customer=alice, feature="pro")

    assert balance.expires_at == first_end


def test_period_after_access_ended_is_not_usable(catalog: Catalog, alice: Customer) -> None:
    with clock.frozen(T0):
        grant(alice, "pro_month")
    with clock.frozen(T0 + timedelta(days=40)):
        balance = balance_get(customer=alice, feature="pro")

    assert (balance.can_use, balance.remaining, balance.unlimited) == (False, 0, False)


def test_only_future_access_is_not_usable_yet(catalog: Catalog, alice: Customer) -> None:
    with clock.frozen(T0):
        ledger.batch_create(
            customer_id=alice.pk, product_id=catalog["PRO"].pk, product_type="period", units=1,
            valid_from=T0 + timedelta(days=1), expires_at=T0 + timedelta(days=5),
            source="manual", action_type="test",
        )
        balance = balance_get(customer=alice, feature="pro")

    assert (balance.can_use, balance.unlimited) == (False, False)


def test_unlimited_access_has_no_end(catalog: Catalog, alice: Customer) -> None:
    grant(alice, "unl_forever")

    balance = balance_get(customer=alice, feature="Exports")

    assert (balance.can_use, balance.remaining, balance.unlimited, balance.expires_at) == (
        True, None, True, None
    )


def test_access_hides_quantity_remaining(catalog: Catalog, alice: Customer) -> None:
    grant(alice, "reports_10")
    grant(alice, "pro_month")
    grant(alice, "unl_forever")

    assert balance_get(customer=alice, feature="reports").remaining == 10
    assert balance_get(customer=alice, feature="pro").remaining is None


def test_units_reserved_by_active_holds_are_not_remaining(
    catalog: Catalog, alice: Customer
) -> None:
    grant(alice, "reports_10")

    hold_create(customer=alice, feature="reports", amount=4)

    assert balance_get(customer=alice, feature="report_generation").remaining == 6


def test_balance_list_one_item_per_key_and_feature(catalog: Catalog, alice: Customer) -> None:
    with clock.frozen(T0):
        grant(alice, "reports_10")
        grant(alice, "reports_5_forever")
        grant(alice, "pro_month")
        grant(alice, "unl_forever")
        items = balance_list(customer=alice)

    by_name = {b.feature: (b.remaining, b.unlimited) for b in items}
    assert [b.feature for b in items] == sorted(by_name, key=str.lower)
    assert by_name == {
        "REPORTS": (15, False),
        "report_generation": (15, False),
        "PRO": (None, True),
        "priority_support": (None, True),
        "UNL": (None, True),
        "exports": (None, True),
    }


def test_balance_list_matches_balance_get(catalog: Catalog, alice: Customer) -> None:
    grant(alice, "reports_10")
    grant(alice, "pro_month")

    for item in balance_list(customer=alice):
        single = balance_get(customer=alice, feature=item.feature)
        assert (item.remaining, item.unlimited, item.can_use, item.expires_at) == (
            single.remaining, single.unlimited, single.can_use, single.expires_at
        )


def test_balance_list_merges_a_feature_shared_by_two_products(
    catalog: Catalog, alice: Customer
) -> None:
    from billable.services.catalog import product_create

    product_create(key="extra", name="E", product_type="quantity", features=["Report_Generation"])
    adjustment_create(customer=alice, product_key="extra", amount=3, reason="t")
    grant(alice, "reports_10")

    by_name = {b.feature: b.remaining for b in balance_list(customer=alice)}

    assert by_name == {"EXTRA": 3, "REPORTS": 10, "report_generation": 13}


@pytest.mark.parametrize("feature", ["report_generation", "reports"])
def test_balance_of_a_customer_without_batches(alice: Customer, feature: str) -> None:
    assert balance_get(customer=alice, feature=feature).can_use is False
    assert balance_list(customer=alice) == []
