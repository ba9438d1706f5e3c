"""Ledger verification: every batch's `remaining` equals its credits minus its debits.

`ledger_verify` checks the current tenant schema in one statement (one snapshot, so a concurrent
consume is seen whole or not at all); `tenants_verify` runs it over every active and suspended
tenant, and reports a tenant whose schema cannot be read (`LedgerReport.error`) instead of
stopping there. Both only read.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from django.db import DatabaseError, connection, transaction
from django_tenants.utils import schema_context

from tenants.models import Tenant, TenantStatus
from tenants.schema_migrations import unusable_schemas

_VERIFY_SQL = """
    WITH sums AS (
        SELECT b.id, b.customer_id, b.remaining,
               COALESCE(SUM(e.amount) FILTER (WHERE e.direction = 'credit'), 0) AS credits,
               COALESCE(SUM(e.amount) FILTER (WHERE e.direction = 'debit'), 0) AS debits,
               COUNT(e.id) AS entries
        FROM billable_quotabatch b LEFT JOIN billable_ledgerentry e ON e.batch_id = b.id
        GROUP BY b.id
    )
    SELECT id, customer_id, remaining, credits, debits, entries,
           (remaining <> credits - debits OR remaining < 0 OR credits - debits < 0) AS drifting
    FROM sums
"""


@dataclass(frozen=True)
class BatchDrift:
    """A batch whose `remaining` disagrees with its ledger, or that is negative."""

    batch_id: Any
    customer_id: Any
    remaining: int
    credits: int
    debits: int

    @property
    def ledger_balance(self) -> int:
        return self.credits - self.debits

    def describe(self) -> str:
        return (
            f"batch {self.batch_id} (customer {self.customer_id}): remaining={self.remaining}, "
            f"credits-debits={self.credits}-{self.debits}={self.ledger_balance}"
        )


@dataclass(frozen=True)
class LedgerReport:
    """The result of verifying one tenant schema; `error` says why it could not be checked."""

    schema_name: str
    slug: str = ""
    batches: int = 0
    entries: int = 0
    drifts: list[BatchDrift] = field(default_factory=list)
    error: str = ""

    @property
    def ok(self) -> bool:
        return not self.drifts and not self.error


def ledger_verify(*, slug: str = "") -> LedgerReport:
    """Check the ledger invariant of every batch in the current tenant schema."""
    batches = entries = 0
    drifts: list[BatchDrift] = []
    with connection.cursor() as cursor:
        cursor.execute(_VERIFY_SQL)
        for batch_id, customer_id, remaining, credits, debits, count, drifting in cursor:
            batches += 1
            entries += int(count)
            if drifting:
                drifts.append(
                    BatchDrift(
                        batch_id=batch_id,
                        customer_id=customer_id,
                        remaining=int(remaining),
                        credits=int(credits),
                        debits=int(debits),
                    )
                )
    drifts.sort(key=lambda drift: str(drift.batch_id))
    return LedgerReport(
        schema_name=connection.schema_name,  # type: ignore[attr-defined]
        slug=slug,
        batches=batches,
        entries=entries,
        drifts=drifts,
    )


def verified_tenants(slugs: Iterable[str] | None = None) -> list[Tenant]:
    """The tenants to verify: active and suspended ones (optionally only these slugs)."""
    tenants = Tenant.objects.filter(
        status__in=[TenantStatus.ACTIVE, TenantStatus.SUSPENDED]
    ).order_by("slug")
    if slugs is not None:
        tenants = tenants.filter(slug__in=list(slugs))
    return list(tenants)


def tenants_verify(*, slugs: Iterable[str] | None = None) -> list[LedgerReport]:
    """Verify the ledger of every active and suspended tenant (or of the given slugs).

    A tenant whose schema is missing, cannot be selected or cannot be read gets a report with
    its `error`, and the others are still checked.
    """
    tenants = verified_tenants(slugs)
    unusable = unusable_schemas(tenant.schema_name for tenant in tenants)
    reports = []
    for tenant in tenants:
        name, slug = tenant.schema_name, tenant.slug
        if name in unusable:
            reports.append(LedgerReport(schema_name=name, slug=slug, error=unusable[name]))
            continue
        try:
            # A failed read rolls back to here, inside a caller's transaction too.
            with transaction.atomic(), schema_context(name):
                reports.append(ledger_verify(slug=slug))
        except DatabaseError as exc:
            reports.append(LedgerReport(schema_name=name, slug=slug, error=str(exc).strip()))
    return reports
