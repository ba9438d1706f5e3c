"""Validity periods with calendar arithmetic (Jan 31 + 1 month = Feb 28/29), and their bounds.

A period is at most 100 years (`MAX_PERIOD`, per unit): one offer item's, and the whole
extension one grant or order line makes (`period_too_long`). No expiry is ever later than
`LATEST_EXPIRY`: `period_end` raises `ExpiryOutOfRange` (422) instead of overflowing, which a
run of contiguous renewals could otherwise reach.
"""

from __future__ import annotations

import calendar
from datetime import UTC, datetime, timedelta

from billable.errors import ExpiryOutOfRange
from billing_platform.core.errors import ValidationFailed

# 100 years in each unit (hours and days as 365.25-day years).
MAX_PERIOD = {"hours": 876_600, "days": 36_525, "months": 1_200, "years": 100}
# The latest expiry stored: a year short of what Python's datetime can hold, so no arithmetic on
# a stored time (time zones, a sweep's look-ahead) can overflow.
LATEST_EXPIRY = datetime(9999, 1, 1, tzinfo=UTC)
_STEPS = {"hours": timedelta(hours=1), "days": timedelta(days=1)}


def add_months(start: datetime, months: int) -> datetime:
    month_index = start.month - 1 + months
    year = start.year + month_index // 12
    month = month_index % 12 + 1
    day = min(start.day, calendar.monthrange(year, month)[1])
    return start.replace(year=year, month=month, day=day)


def interval_period(unit: str, count: int) -> tuple[str, int]:
    """A plan interval (`days`, `weeks`, `months`, `years` × count) as a period unit and value:
    weeks are 7 days."""
    return ("days", count * 7) if unit == "weeks" else (unit, count)


def period_too_long(unit: str, value: int | None, times: int = 1) -> bool:
    """Whether `times` periods of `value` `unit`s are more than 100 years."""
    return unit in MAX_PERIOD and (value or 0) * times > MAX_PERIOD[unit]


def check_expiry(at: datetime | None, *, field: str = "expires_at") -> None:
    """Refuse an explicit expiry later than `LATEST_EXPIRY` (422 naming the field)."""
    if at is not None and at > LATEST_EXPIRY:
        raise ValidationFailed(
            f"{field} is at most {LATEST_EXPIRY.date().isoformat()}.", field=field, msg="too late"
        )


def period_end(start: datetime, unit: str, value: int | None, times: int = 1) -> datetime | None:
    """The end of `times` periods of `value` `unit`s from `start`; None means no expiry.

    Raises `ExpiryOutOfRange` when the end would be later than `LATEST_EXPIRY`.
    """
    if unit == "forever" or not value:
        return None
    total = value * times
    if unit in _STEPS:
        # Whole steps left before the horizon, compared before any timedelta is built.
        if total > (LATEST_EXPIRY - start) // _STEPS[unit]:
            raise _out_of_range(start)
        return start + _STEPS[unit] * total
    if unit not in ("months", "years"):
        raise ValueError(f"unknown period unit {unit!r}")
    months = total if unit == "months" else 12 * total
    if start.year + (start.month - 1 + months) // 12 > LATEST_EXPIRY.year:
        raise _out_of_range(start)
    end = add_months(start, months)
    if end > LATEST_EXPIRY:
        raise _out_of_range(start)
    return end


def _out_of_range(start: datetime) -> ExpiryOutOfRange:
    return ExpiryOutOfRange(
        f"Access from {start.isoformat()} would end after {LATEST_EXPIRY.date().isoformat()}, "
        "the latest expiry the platform stores."
    )
