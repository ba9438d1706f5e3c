"""Run the sweep over every tenant schema (billing_sweep, and the worker every minute)."""

from __future__ import annotations

import logging

from django_tenants.utils import schema_context

from billable.services.sweep import tenant_sweep
from tenants.models import Tenant, TenantStatus

logger = logging.getLogger("billable.sweep")


def sweep_all_tenants() -> dict[str, int]:
    from billing_platform.webhooks.services import purge_old

    totals = {"tenants": 0, "batches_expired": 0, "holds_expired": 0, "idempotency_purged": 0}
    totals["events_purged"] = purge_old()
    schemas = Tenant.objects.filter(
        status__in=[TenantStatus.ACTIVE, TenantStatus.SUSPENDED]
    ).values_list("schema_name", flat=True)
    for schema in list(schemas):
        try:
            with schema_context(schema):
                result = tenant_sweep()
        except Exception:
            logger.exception("sweep failed in %s", schema)
            continue
        totals["tenants"] += 1
        totals["batches_expired"] += result.batches_expired
        totals["holds_expired"] += result.holds_expired
        totals["idempotency_purged"] += result.idempotency_purged
    return totals
