"""Cursor (keyset) pagination: `{"items": [...], "next_cursor": "..." | null}`.

A cursor is the URL-safe base64 of the ordering values of the last item served, so pages stay
stable while rows are added and no page costs an OFFSET scan.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

from django.core.exceptions import FieldDoesNotExist
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import Model, Q, QuerySet
from ninja import Field

from billing_platform.core import errors
from billing_platform.core.jsonbody import read_json
from billing_platform.core.schema_types import Schema
from billing_platform.core.scope import run_scope

M = TypeVar("M", bound=Model)

DEFAULT_LIMIT = 50
MAX_LIMIT = 200


class PageParams(Schema):
    limit: int = Field(DEFAULT_LIMIT, ge=1, le=MAX_LIMIT, description="Items per page (1–200).")
    cursor: str | None = Field(None, description="`next_cursor` of the previous page.")


@dataclass
class Page(Generic[M]):
    items: list[M]
    next_cursor: str | None


def _encode(values: list[Any]) -> str:
    plain = [v.isoformat() if isinstance(v, datetime) else v for v in values]
    return base64.urlsafe_b64encode(json.dumps(plain).encode()).decode().rstrip("=")


def _decode(cursor: str, count: int) -> list[Any]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        values = read_json(base64.urlsafe_b64decode(padded.encode()))
        if not isinstance(values, list) or len(values) != count:
            raise ValueError("wrong shape")
        if not all(isinstance(v, (str, int, float)) and not isinstance(v, bool) for v in values):
            raise ValueError("a cursor holds scalar values only")
        return values
    except (ValueError, TypeError, UnicodeDecodeError) as exc:
        raise _invalid_cursor() from exc


def _invalid_cursor() -> errors.ValidationFailed:
    return errors.ValidationFailed(
        "The cursor is not one this API issued.",
        errors=[{"loc": ["query", "cursor"], "msg": "invalid cursor"}],
    )


def _field(queryset: QuerySet[Any], name: str) -> Any:
    """The model field, or the annotation's output field, that orders by `name`."""
    meta = queryset.model._meta
    if name == "pk":
        return meta.pk
    try:
        return meta.get_field(name)
    except FieldDoesNotExist:
        return queryset.query.annotations[name].output_field


def _typed(queryset: QuerySet[Any], fields: Sequence[str], values: list[Any]) -> list[Any]:
    """Each cursor value as its field's Python type; a value of the wrong type is a 422."""
    typed = []
    for name, value in zip(fields, values, strict=True):
        field = _field(queryset, name)
        try:
            typed.append(field.to_python(value))
        except (DjangoValidationError, TypeError, ValueError, OverflowError) as exc:
            raise _invalid_cursor() from exc
    return typed


def paginate(
    queryset: QuerySet[M],
    *,
    limit: int,
    cursor: str | None,
    order: Sequence[str] = ("-created_at", "-pk"),
) -> Page[M]:
    """Keyset-paginate by `order` (all fields descending, or all ascending; no nulls)."""
    fields = [name.lstrip("-") for name in order]
    descending = order[0].startswith("-")
    queryset = queryset.order_by(*order)
    if cursor:
        values = _typed(queryset, fields, _decode(cursor, len(fields)))
        lookup = "lt" if descending else "gt"
        condition = Q()
        for i, name in enumerate(fields):
            equal = {fields[j]: values[j] for j in range(i)}
            condition |= Q(**equal, **{f"{name}__{lookup}": values[i]})
        queryset = queryset.filter(condition)
    rows = list(queryset[: limit + 1])
    next_cursor = None
    if len(rows) > limit:
        rows = rows[:limit]
        last = rows[-1]
        next_cursor = _encode([_value(last, name) for name in fields])
    return Page(items=rows, next_cursor=next_cursor)


def _value(obj: Model, name: str) -> Any:
    value = obj.pk if name == "pk" else getattr(obj, name)
    if hasattr(value, "hex") and not isinstance(value, (bytes, int, float)):
        return str(value)
    return value


def page_data(page: Page[M], present: Callable[[M], Any]) -> dict[str, Any]:
    """The page as the API shows it: `{"items": [...], "next_cursor": ...}`.

    The items are rendered in one run scope, so what their presenter looks up for the tenant
    (the digits of a declared currency) is read once per page, not once per item.
    """
    with run_scope():
        items = [present(item) for item in page.items]
    return {"items": items, "next_cursor": page.next_cursor}
