"""billable.periods: calendar arithmetic for validity periods."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from billable.errors import ExpiryOutOfRange
from billable.periods import LATEST_EXPIRY, add_months, period_end, period_too_long


def _at(year: int, month: int, day: int, hour: int = 0) -> datetime:
    return datetime(year, month, day, hour, tzinfo=UTC)


@pytest.mark.parametrize(
    ("start", "months", "end"),
    [
        (_at(2024, 1, 31), 1, _at(2024, 2, 29)),
        (_at(2023, 1, 31), 1, _at(2023, 2, 28)),
        (_at(2024, 3, 31), 1, _at(2024, 4, 30)),
        (_at(2024, 1, 15), 1, _at(2024, 2, 15)),
        (_at(2024, 12, 31), 1, _at(2025, 1, 31)),
        (_at(2024, 11, 30), 3, _at(2025, 2, 28)),
        (_at(2024, 1, 31), 13, _at(2025, 2, 28)),
        (_at(2024, 2, 29), 12, _at(2025, 2, 28)),
        (_at(2024, 1, 31, 17), 1, _at(2024, 2, 29, 17)),
    ],
)
def test_add_months_is_calendar_arithmetic(start: datetime, months: int, end: datetime) -> None:
    assert add_months(start, months) == end


def test_add_months_keeps_time_and_zone() -> None:
    start = datetime(2024, 5, 31, 23, 59, 58, 123, tzinfo=UTC)

    assert add_months(start, 1) == datetime(2024, 6, 30, 23, 59, 58, 123, tzinfo=UTC)


@pytest.mark.parametrize(
    ("unit", "value", "times", "end"),
    [
        ("hours", 5, 1, _at(2024, 1, 31, 17)),
        ("hours", 24, 2, _at(2024, 2, 2, 12)),
        ("days", 30, 1, _at(2024, 3, 1, 12)),
        ("days", 1, 3, _at(2024, 2, 3, 12)),
        ("months", 1, 1, _at(2024, 2, 29, 12)),
        ("months", 1, 2, _at(2024, 3, 31, 12)),
        ("months", 2, 3, _at(2024, 7, 31, 12)),
        ("years", 1, 1, _at(2025, 1, 31, 12)),
        ("years", 1, 2, _at(2026, 1, 31, 12)),
    ],
)
def test_period_end(unit: str, value: int, times: int, end: datetime) -> None:
    assert period_end(_at(2024, 1, 31, 12), unit, value, times) == end


def test_year_from_a_leap_day() -> None:
    assert period_end(_at(2024, 2, 29), "years", 1) == _at(2025, 2, 28)


@pytest.mark.parametrize(("unit", "value"), [("forever", 1), ("forever", None), ("days", None),
                                             ("days", 0), ("months", 0)])
def test_forever_or_no_value_means_no_expiry(unit: str, value: int | None) -> None:
    assert period_end(_at(2024, 1, 1), unit, value) is None


def test_unknown_unit_is_an_error() -> None:
    with pytest.raises(ValueError, match="weeks"):
        period_end(_at(2024, 1, 1), "weeks", 1)


def test_days_are_exact_durations() -> None:
    start = _at(2024, 3, 30, 1)

    assert period_end(start, "days", 2) == start + timedelta(hours=48)


@pytest.mark.parametrize(
    ("unit", "value", "times"),
    [
        ("hours", 100_000, 10**12),
        ("days", 36_525, 1_000_000),
        ("months", 1, 1_000_000),
        ("months", 100_000, 1),
        ("years", 100_000, 1),
        ("years", 100, 10**12),
    ],
)
def test_an_end_past_the_horizon_is_out_of_range_not_an_overflow(
    unit: str, value: int, times: int
) -> None:
    with pytest.raises(ExpiryOutOfRange):
        period_end(_at(2024, 1, 31), unit, value, times)


@pytest.mark.parametrize("unit", ["hours", "days", "months", "years"])
def test_the_horizon_itself_is_the_latest_end(unit: str) -> None:
    # given a start one unit short of the horizon
    start = {
        "hours": LATEST_EXPIRY - timedelta(hours=1),
        "days": LATEST_EXPIRY - timedelta(days=1),
        "months": _at(9998, 12, 1),
        "years": _at(9998, 1, 1),
    }[unit]
    # then one unit reaches it exactly and two go past it
    assert period_end(start, unit, 1) == LATEST_EXPIRY
    with pytest.raises(ExpiryOutOfRange):
        period_end(start, unit, 2)


def test_a_start_past_the_horizon_cannot_be_extended() -> None:
    start = datetime(9999, 12, 31, 23, tzinfo=UTC)
    for unit in ("hours", "days", "months", "years"):
        with pytest.raises(ExpiryOutOfRange):
            period_end(start, unit, 1)
    assert period_end(start, "forever", 1) is None


@pytest.mark.parametrize(("unit", "most"), [("hours", 876_600), ("days", 36_525),
                                             ("months", 1_200), ("years", 100)])
def test_periods_are_at_most_a_hundred_years(unit: str, most: int) -> None:
    assert not period_too_long(unit, most)
    assert period_too_long(unit, most + 1)
    assert not period_too_long(unit, 1, most)
    assert period_too_long(unit, 2, most // 2 + 1)
    assert not period_too_long("forever", 10**9, 10**9)
    assert period_end(_at(2024, 1, 1), unit, most) is not None
