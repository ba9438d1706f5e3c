"""What the billing engine needs to know about the tenant whose schema is active."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import datetime
from typing import Any

from django.db import connection

from billable.currencies import is_iso, minor_digits
from billable.models import Currency
from billing_platform.core.scope import scoped
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


def declared_currencies() -> Mapping[str, int]:
    """The active tenant's declared currency codes and their minor digits: one query, once per
    run scope (a page rendered, a sweep). A code's digits are fixed once anything is priced in
    it, so a scope never renders an amount with digits that have changed."""
    schema = current_schema()
    return scoped(
        ("declared_currencies", schema),
        lambda: dict(Currency.objects.values_list("code", "minor_digits")),
    )


def currency_digits(currency: str) -> int:
    """Minor digits of a price's currency in the active tenant; an ISO 4217 code (nearly every
    price) costs no query."""
    if is_iso(currency):
        return minor_digits(currency)
    return minor_digits(currency, declared_currencies())


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
