"""billable.periods: calendar arithmetic for validity periods."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from billable.periods import add_months, period_end


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
