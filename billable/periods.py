"""Validity periods with calendar arithmetic (Jan 31 + 1 month = Feb 28/29)."""

from __future__ import annotations

import calendar
from datetime import datetime, timedelta


def add_months(start: datetime, months: int) -> datetime:
    month_index = start.month - 1 + months
    year = start.year + month_index // 12
    month = month_index % 12 + 1
    day = min(start.day, calendar.monthrange(year, month)[1])
    return start.replace(year=year, month=month, day=day)


def period_end(start: datetime, unit: str, value: int | None, times: int = 1) -> datetime | None:
    """The end of `times` periods of `value` `unit`s from `start`; None means no expiry."""
    if unit == "forever" or not value:
        return None
    total = value * times
    if unit == "hours":
        return start + timedelta(hours=total)
    if unit == "days":
        return start + timedelta(days=total)
    if unit == "months":
        return add_months(start, total)
    if unit == "years":
        return add_months(start, 12 * total)
    raise ValueError(f"unknown period unit {unit!r}")
