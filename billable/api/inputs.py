"""What the billing endpoints read from a request: the caller, the customer named, a PATCH,
an amount."""

from __future__ import annotations

from collections.abc import Collection
from decimal import Decimal
from typing import Any

from django.http import HttpRequest

from billable.schemas import CustomerRefIn
from billable.selectors import CustomerRef
from billing_platform.core.errors import ValidationFailed
from billing_platform.core.identity import caller
from billing_platform.core.schema_types import Schema


def actor(request: HttpRequest) -> str:
    """Who the ledger records as having acted: `key:<api key id>`."""
    return caller(request).actor


def customer_ref(payload: CustomerRefIn) -> CustomerRef:
    """The customer a payload or query names, as the customer services take it."""
    external = payload.external_id
    return CustomerRef(
        customer_id=payload.customer_id,
        external_id=str(external) if external is not None else None,
        provider=payload.provider,
    )


def patch_changes(payload: Schema, *, clearable: Collection[str] = ()) -> dict[str, Any]:
    """The fields a PATCH sets; null leaves a field as is unless it is `clearable`."""
    return {
        name: value
        for name, value in payload.dict(exclude_unset=True).items()
        if value is not None or name in clearable
    }


def decimal_amount(value: Any, field: str) -> Decimal:
    """A price as given (a decimal string or a JSON number) as a non-negative `Decimal`."""
    try:
        amount = Decimal(str(value))
    except Exception as exc:
        raise ValidationFailed(f"{field} is a decimal amount.", field=field) from exc
    if not amount.is_finite() or amount < 0:
        raise ValidationFailed(f"{field} is a non-negative amount.", field=field)
    return amount
