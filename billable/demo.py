"""The demo catalog installed by `onboard_tenant --demo-catalog`, the API flag and `make run`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django_tenants.utils import schema_context

if TYPE_CHECKING:
    from tenants.models import Tenant


def install_demo_catalog(tenant: Tenant) -> None:
    """Install the demo products and offers in the tenant's schema (idempotent)."""
    from billable.services.catalog import install_demo_catalog as install

    with schema_context(tenant.schema_name):
        install()
