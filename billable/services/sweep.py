"""Periodic upkeep of the tenant schemas: advance subscriptions, expire batches and holds, purge
old idempotency keys.

`tenant_sweep` sweeps the schema in use; `due_tenants_sweep` every schema whose `sweep_due_at`
has come (the platform's sweep adds the webhook purge: `billing_platform.operations`).

Reads never depend on it having run (usability is decided by time); the sweep makes the ledger
say what time already decided: an expired batch gets a debit of what was left.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta

from django.db import transaction
from django.db.models import Q
from django_tenants.utils import schema_context

from billable import clock, signals
from billable.models import BatchState, IdempotencyRecord, QuotaBatch
from billable.selectors import sweep_next_due
from billable.services import ledger
from billable.services.holds import holds_expire_due
from billable.services.subscriptions import subscriptions_advance_all
from billable.tenancy import current_settings
from billing_platform.core.scope import run_scope
from tenants.models import Tenant, TenantStatus
from tenants.schema_migrations import unusable_schemas

BATCH_CHUNK = 500

logger = logging.getLogger("billable.sweep")


@dataclass(frozen=True)
class SweepResult:
    subscriptions_advanced: int
    batches_expired: int
    holds_expired: int
    idempotency_purged: int


def batches_expire_due(*, limit: int = BATCH_CHUNK) -> int:
    """Mark batches past their expiry `expired`, debiting what remained; sends batch_expired."""
    now = clock.now()
    with transaction.atomic():
        due = list(
            # The batches only (`of=("self",)`): the joined customer and product rows stay
            # unlocked, so a merge or catalog change never waits for a whole sweep chunk.
            QuotaBatch.objects.select_for_update(skip_locked=True, of=("self",))
            .filter(state__in=[BatchState.ACTIVE, BatchState.EXHAUSTED], expires_at__lte=now)
            .select_related("product", "customer")
            .order_by("expires_at")[:limit]
        )
        for batch in due:
            ledger.batch_close(
                batch=batch,
                state=BatchState.EXPIRED,
                action_type="expiry",
                action_id=str(batch.pk),
                actor="system:sweep",
            )
            batch.refresh_from_db()
            signals.batch_expired.send(sender=QuotaBatch, batch=batch, customer=batch.customer)
    return len(due)


def idempotency_purge() -> int:
    days = int(current_settings().get("idempotency_retention_days") or 7)
    cutoff = clock.now() - timedelta(days=days)
    deleted, _ = IdempotencyRecord.objects.filter(created_at__lt=cutoff).delete()
    return deleted


def tenant_sweep() -> SweepResult:
    """Run every upkeep task in the active tenant schema.

    Subscriptions first: an ended allowance period's unused units roll over before the batch
    expiry takes what is left. One run scope (`billing_platform.core.scope`) for the whole
    tenant: what every item reads alike is read once.
    """
    with run_scope():
        advanced = subscriptions_advance_all()
        expired = 0
        while True:
            done = batches_expire_due()
            expired += done
            if done < BATCH_CHUNK:
                break
        return SweepResult(
            subscriptions_advanced=advanced,
            batches_expired=expired,
            holds_expired=holds_expire_due(),
            idempotency_purged=idempotency_purge(),
        )


def due_tenants_sweep(*, everything: bool = False) -> dict[str, int]:
    """Sweep the schemas whose `sweep_due_at` has come (every schema with `everything`).

    Only active and suspended tenants: never a schema still being built. A tenant whose schema
    cannot be used (missing, or a name that cannot be selected) is logged and counted in
    `tenants_failed` without being visited; one schema's failure is logged and counted the same
    way, and the others are still swept.
    """
    totals = {
        "tenants": 0,
        "tenants_failed": 0,
        "subscriptions_advanced": 0,
        "batches_expired": 0,
        "holds_expired": 0,
        "idempotency_purged": 0,
    }
    tenants = Tenant.objects.filter(status__in=[TenantStatus.ACTIVE, TenantStatus.SUSPENDED])
    if not everything:
        tenants = tenants.filter(Q(sweep_due_at__isnull=True) | Q(sweep_due_at__lte=clock.now()))
    due_tenants = list(tenants.values_list("id", "slug", "schema_name"))
    unusable = unusable_schemas(schema for _id, _slug, schema in due_tenants)
    for tenant_id, slug, schema in due_tenants:
        if schema in unusable:
            logger.error("sweep skipped tenant %r (schema %r): %s", slug, schema, unusable[schema])
            totals["tenants_failed"] += 1
            continue
        try:
            with schema_context(schema):
                result = tenant_sweep()
                due = sweep_next_due()
            Tenant.objects.filter(pk=tenant_id).update(sweep_due_at=due)
        except Exception:
            logger.exception("sweep failed in %s", schema)
            totals["tenants_failed"] += 1
            continue
        totals["tenants"] += 1
        totals["subscriptions_advanced"] += result.subscriptions_advanced
        totals["batches_expired"] += result.batches_expired
        totals["holds_expired"] += result.holds_expired
        totals["idempotency_purged"] += result.idempotency_purged
    return totals
