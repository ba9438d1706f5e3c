"""The demo catalog installed by `onboard_tenant --demo-catalog` and `make run`."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tenants.models import Tenant


def install_demo_catalog(tenant: Tenant) -> None:
    """Install the demo products and offers in the tenant's schema (idempotent)."""
    # The catalog models arrive with the billing engine; until then there is nothing to install.
    return None
