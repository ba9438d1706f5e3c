"""What the billing engine needs to know about the tenant whose schema is active."""

from __future__ import annotations

from typing import Any

from django.db import connection

from tenants.models import DEFAULT_SETTINGS, Tenant


def current_schema() -> str:
    return str(connection.schema_name)  # type: ignore[attr-defined]


def current_settings() -> dict[str, Any]:
    """The active tenant's settings: from the request's resolved key, else from its row."""
    tenant = getattr(connection, "tenant", None)
    settings = getattr(tenant, "settings", None)
    if isinstance(settings, dict):
        return {**DEFAULT_SETTINGS, **settings}
    row = Tenant.objects.filter(schema_name=current_schema()).first()
    return row.merged_settings if row is not None else dict(DEFAULT_SETTINGS)


def current_tenant_row() -> Tenant:
    return Tenant.objects.get(schema_name=current_schema())
