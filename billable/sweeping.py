"""Run the sweep over every tenant schema (billing_sweep, and the worker every minute)."""

from __future__ import annotations

import logging

from django.db.models import Q
from django_tenants.utils import schema_context

from billable import clock
from billable.services.sweep import next_due, tenant_sweep
from tenants.models import Tenant, TenantStatus

logger = logging.getLogger("billable.sweep")


def sweep_all_tenants(*, everything: bool = False) -> dict[str, int]:
    """Sweep the schemas whose `sweep_due_at` has come (every schema with `everything`)."""
    from billing_platform.webhooks.services import purge_old

    totals = {"tenants": 0, "batches_expired": 0, "holds_expired": 0, "idempotency_purged": 0}
    totals["events_purged"] = purge_old()
    tenants = Tenant.objects.filter(status__in=[TenantStatus.ACTIVE, TenantStatus.SUSPENDED])
    if not everything:
        tenants = tenants.filter(Q(sweep_due_at__isnull=True) | Q(sweep_due_at__lte=clock.now()))
    for tenant_id, schema in list(tenants.values_list("id", "schema_name")):
        try:
            with schema_context(schema):
                result = tenant_sweep()
                due = next_due()
            Tenant.objects.filter(pk=tenant_id).update(sweep_due_at=due)
        except Exception:
            logger.exception("sweep failed in %s", schema)
            continue
        totals["tenants"] += 1
        totals["batches_expired"] += result.batches_expired
        totals["holds_expired"] += result.holds_expired
        totals["idempotency_purged"] += result.idempotency_purged
    return totals
