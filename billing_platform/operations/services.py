"""Platform-wide operations: each composes the services of several apps."""

from __future__ import annotations

from django_tenants.utils import schema_context

from billable.services.catalog import demo_catalog_install
from billable.services.sweep import due_tenants_sweep
from billing_platform.webhooks.services import purge_old
from tenants.models import ApiKey, Tenant
from tenants.services import tenant_onboard


def platform_tenant_onboard(
    *,
    name: str,
    slug: str,
    rate_limit: str | None = None,
    contact_email: str = "",
    demo_catalog: bool = False,
    expect_build: bool = False,
) -> tuple[Tenant, ApiKey, str]:
    """Onboard a tenant (`tenant_onboard`), with the demo catalog in its schema if asked."""
    tenant, key, raw = tenant_onboard(
        name=name, slug=slug, rate_limit=rate_limit, contact_email=contact_email,
        expect_build=expect_build,
    )
    if demo_catalog:
        with schema_context(tenant.schema_name):
            demo_catalog_install()
    return tenant, key, raw


def platform_sweep(*, everything: bool = False) -> dict[str, int]:
    """Purge old webhook events, then sweep every tenant schema that is due (all: `everything`)."""
    events_purged = purge_old()
    totals = due_tenants_sweep(everything=everything)
    return {**totals, "events_purged": events_purged}
