"""Billing data through the real services (a catalog, grants by SKU, credits) and the ledger
invariant."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from django.db.models import Q, Sum
from django_tenants.utils import schema_context

from billable.models import Customer, Direction, LedgerEntry, Plan, QuotaBatch
from billable.selectors import offer_for_grant
from billable.services.catalog import ItemSpec, offer_create, product_create
from billable.services.grants import GrantResult, adjustment_create, offer_grant
from billable.services.plans import EntitlementSpec, Terms, plan_create
from tenants.models import Tenant


def reports_catalog(tenant: Tenant, *, units: int) -> None:
    """In `tenant`'s schema: the REPORTS product and the offer `reports_<units>` of it."""
    with schema_context(tenant.schema_name):
        product_create(key="reports", name="Reports", product_type="quantity",
                       features=["report_generation"])
        offer_create(sku=f"reports_{units}", name=f"{units} reports", price=Decimal("9.00"),
                     currency="USD", items=[ItemSpec("REPORTS", units)])


def team_plan() -> Plan:
    """In the current schema: TEAM, 29 USD a month after a 7-day trial, with 100 CREDITS a month
    (the CREDITS product must exist)."""
    return plan_create(
        key="team",
        name="Team",
        terms=Terms(
            interval_unit="months",
            interval_count=1,
            price=Decimal("29"),
            currency="USD",
            trial_days=7,
            entitlements=(
                EntitlementSpec(
                    entitlement_type="allowance",
                    product="CREDITS",
                    amount=100,
                    reset_unit="months",
                    reset_count=1,
                    rollover_cap=0,
                ),
            ),
        ),
    )


def grant(
    customer: Customer, sku: str, *, kind: str = "manual", expires_at: datetime | None = None
) -> GrantResult:
    return offer_grant(
        customer=customer, offer=offer_for_grant(sku), kind=kind, expires_at=expires_at
    )


def credit(customer: Customer, units: int, expires_at: datetime | None) -> QuotaBatch:
    """A quantity batch of REPORTS with an explicit expiry (an adjustment)."""
    return adjustment_create(
        customer=customer, product_key="reports", amount=units, reason="test",
        expires_at=expires_at,
    ).batches[0]


def ledger_sum(batch: QuotaBatch) -> int:
    totals = LedgerEntry.objects.filter(batch=batch).aggregate(
        credits=Sum("amount", filter=Q(direction=Direction.CREDIT)),
        debits=Sum("amount", filter=Q(direction=Direction.DEBIT)),
    )
    return int(totals["credits"] or 0) - int(totals["debits"] or 0)


def assert_ledger_invariant(customer: Customer | None = None) -> None:
    """Every batch: remaining == credits - debits, and never negative."""
    batches = QuotaBatch.objects.all()
    if customer is not None:
        batches = batches.filter(customer=customer)
    for batch in batches:
        assert batch.remaining >= 0, batch.pk
        assert batch.remaining == ledger_sum(batch), (batch.pk, batch.remaining)


def remaining_of(batch: QuotaBatch) -> int:
    return QuotaBatch.objects.values_list("remaining", flat=True).get(pk=batch.pk)
