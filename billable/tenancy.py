"""What the billing engine needs to know about the tenant whose schema is active."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import datetime
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


# Inside `sweep_due_deferred`: the earliest due time noted so far, written once at its end.
_deferred: ContextVar[list[datetime] | None] = ContextVar("sweep_due_deferred", default=None)


@contextmanager
def sweep_due_deferred() -> Iterator[None]:
    """Note due times in memory and write the earliest once, at the end: a sweep that grants
    thousands of batches updates the tenant's row once, not once per batch."""
    pending: list[datetime] = []
    token = _deferred.set(pending)
    try:
        yield
    finally:
        _deferred.reset(token)
        if pending:
            note_sweep_due(min(pending))


def note_sweep_due(at: datetime) -> None:
    """Pull the tenant's next sweep time forward to `at` if that is earlier (no-op otherwise)."""
    pending = _deferred.get()
    if pending is not None:
        if pending:
            pending[0] = min(pending[0], at)
        else:
            pending.append(at)
        return
    tenant = getattr(connection, "tenant", None)
    tenant_id = getattr(tenant, "id", None)
    if tenant_id is not None:
        match, value = "id = %s", tenant_id
    else:
        match, value = "schema_name = %s", current_schema()
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE tenants_tenant SET sweep_due_at = %s WHERE {match} "  # noqa: S608
            "AND (sweep_due_at IS NULL OR sweep_due_at > %s)",
            [at, value, at],
        )
