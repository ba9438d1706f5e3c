"""Plan versions: new terms make a version, the same terms do not, old versions never change."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from billable import errors
from billable.models import PlanVersion
from billable.services.catalog import product_update
from billable.services.plans import EntitlementSpec, Terms, plan_create, plan_update, terms_of
from billing_platform.core.errors import ValidationFailed

Catalog = dict[str, Any]


def _terms(**extra: Any) -> Terms:
    values: dict[str, Any] = {
        "interval_unit": "months",
        "interval_count": 1,
        "price": Decimal("19"),
        "currency": "usd",
        "trial_days": 0,
        "entitlements": (
            EntitlementSpec("allowance", product="reports", amount=100),
            EntitlementSpec("value", name="Seats", value=3),
        ),
    }
    values.update(extra)
    return Terms(**values)


@pytest.mark.django_db
def test_terms_are_stored_in_their_one_spelling(catalog: Catalog) -> None:
    plan = plan_create(key="team", name="Team", terms=_terms())
    stored = terms_of(PlanVersion.objects.get(plan=plan, version=1))
    assert stored.currency == "USD" and stored.price == Decimal("19")
    assert stored.entitlements == (
        EntitlementSpec("allowance", product="REPORTS", amount=100, reset_unit="months",
                        reset_count=1, rollover_cap=0),
        EntitlementSpec("value", name="seats", value=3),
    )


@pytest.mark.django_db
def test_only_new_terms_make_a_version(catalog: Catalog) -> None:
    plan = plan_create(key="team", name="Team", terms=_terms())
    plan = plan_update(plan=plan, price=Decimal("19.00"), currency="USD",
                       entitlements=_terms().entitlements)
    assert plan.current_version == 1
    plan = plan_update(plan=plan, trial_days=14)
    plan = plan_update(plan=plan, interval_unit="years", name="Team yearly")
    assert (plan.current_version, plan.name) == (3, "Team yearly")
    first, second, third = PlanVersion.objects.filter(plan=plan).order_by("version")
    assert (first.trial_days, first.interval_unit) == (0, "months")
    assert (second.trial_days, second.interval_unit) == (14, "months")
    assert (third.trial_days, third.interval_unit) == (14, "years")
    # An allowance that took its reset period from the interval keeps it in older versions.
    assert terms_of(first).entitlements[0].reset_unit == "months"


@pytest.mark.django_db
def test_refused_terms_write_nothing(catalog: Catalog) -> None:
    plan = plan_create(key="team", name="Team", terms=_terms())
    with pytest.raises(ValidationFailed):
        plan_update(plan=plan, name="Renamed", interval_unit="weeks", interval_count=5300)
    plan.refresh_from_db()
    assert (plan.current_version, plan.name) == (1, "Team")
    assert PlanVersion.objects.filter(plan=plan).count() == 1


@pytest.mark.django_db
def test_a_deactivated_product_already_in_the_plan_does_not_block_a_change(
    catalog: Catalog,
) -> None:
    plan = plan_create(key="keep", name="keep", terms=Terms(
        "months", 1, Decimal("5"), "USD", 0,
        (EntitlementSpec("allowance", product="reports", amount=10),),
    ))
    product_update(product=catalog["REPORTS"], is_active=False)
    product_update(product=catalog["PRO"], is_active=False)
    changed = plan_update(plan=plan, price=Decimal("6"))
    assert changed.current_version == 2
    # but a deactivated product is not added anew
    with pytest.raises(errors.InactiveProduct):
        plan_update(plan=plan, entitlements=(
            EntitlementSpec("allowance", product="reports", amount=10),
            EntitlementSpec("access", product="pro"),
        ))
