"""Platform-wide operations: each composes the services of several apps."""

from __future__ import annotations

from django_tenants.utils import schema_context

from billable import selectors
from billable.services.catalog import demo_catalog_install
from billable.services.customers import customer_ensure
from billable.services.grants import offer_grant
from billable.services.sweep import due_tenants_sweep
from billing_platform.core.errors import BillingError
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


# The customer the OpenAPI examples name, and what it consumes (billing_platform/http/openapi.py).
DEMO_CUSTOMER = selectors.CustomerRef(provider="telegram", external_id="1001")
DEMO_FEATURE = "report_generation"
DEMO_TOP_UP_SKU = "REPORTS_10"


def demo_customer_ensure(tenant: Tenant) -> bool:
    """Give the demo customer (telegram user 1001) reports to consume when it has none left.

    The API's examples name this customer and the demo catalog, so "Try it out" in the Swagger
    UI of `make run` answers 200 rather than 402. Returns whether a bonus of `REPORTS_10` was
    granted (not when the demo catalog's offer was changed so that it cannot be).
    """
    with schema_context(tenant.schema_name):
        customer = customer_ensure(DEMO_CUSTOMER)
        if selectors.balance_get(customer=customer, feature=DEMO_FEATURE).can_use:
            return False
        try:
            offer = selectors.offer_for_grant(DEMO_TOP_UP_SKU)
        except BillingError:
            return False
        offer_grant(
            customer=customer, offer=offer, kind="bonus",
            reason="Reports for the API examples", actor="platform:demo",
        )
    return True


def platform_sweep(*, everything: bool = False) -> dict[str, int]:
    """Purge old webhook events, then sweep every tenant schema that is due (all: `everything`)."""
    events_purged = purge_old()
    totals = due_tenants_sweep(everything=everything)
    return {**totals, "events_purged": events_purged}
