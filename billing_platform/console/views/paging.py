"""What the filtered lists (orders, the audit log) share: the page at the request's cursor, the
filters without the cursor for the next page's link, and a from / to pair of UTC days."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, TypeVar

from django.db.models import Model
from django.http import HttpRequest

from billing_platform.core.errors import ValidationFailed
from billing_platform.core.pagination import Page

M = TypeVar("M", bound=Model)


def page_at_cursor(request: HttpRequest, read: Callable[[str | None], Page[M]]) -> Page[M]:
    """`read` at the request's cursor; the first page for a cursor the list did not issue."""
    try:
        return read(request.GET.get("cursor") or None)
    except ValidationFailed:
        return read(None)


def filters_query(request: HttpRequest) -> str:
    """The request's filters, without its cursor, for the next page's link."""
    filters = request.GET.copy()
    filters.pop("cursor", None)
    return filters.urlencode()


def _day_start(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


def day_bounds(data: dict[str, Any]) -> tuple[datetime | None, datetime | None]:
    """`created_from` and `created_to` (UTC days, the last inclusive) of a filter form's cleaned
    data, as [from, before) instants."""
    start, end = data.get("created_from"), data.get("created_to")
    return (
        _day_start(start) if start else None,
        _day_start(end + timedelta(days=1)) if end else None,
    )
