"""The overview's reads: consumption per feature per day, orders and revenue per currency,
subscriptions by status and webhook health, for the current tenant's schema.

Consumption is summed from `usage_recent_idx` (created_at, with feature and amount included, so
the sums read the index alone). Sums of past days never change (a usage's `created_at` is set
once), so each UTC day that ended more than `SETTLED` ago is kept in the shared cache, one key
per tenant and day; today, and a day that ended only just now (a transaction begun before
midnight may still commit its usages), are summed on every view. A tenant with a million usages
in the month thus costs one indexed read of today's rows.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from django.core.cache import cache
from django.db.models import Count, Q, QuerySet, Sum
from django.db.models.functions import TruncDate

from billable import clock
from billable.models import Order, OrderStatus, Subscription, SubscriptionStatus, Usage
from billing_platform.webhooks.models import DeliveryStatus, Endpoint
from billing_platform.webhooks.selectors import delivery_list, endpoint_list
from tenants.models import Tenant

DAYS = 30
# A day's sums are cached once it ended this long ago: later commits are no longer possible.
SETTLED = timedelta(hours=1)
# Kept a little longer than the chart looks back.
CACHE_SECONDS = (DAYS + 5) * 24 * 3600
# Features drawn one by one; the rest are summed as "other".
CHART_FEATURES = 6


@dataclass(frozen=True)
class DailyUsage:
    """Units used per feature on each of the last `DAYS` UTC days (oldest first)."""

    days: list[date]
    features: list[str]  # the busiest first; "other" last when there are more
    units: dict[str, list[int]]  # feature -> one sum per day
    totals: dict[str, int]

    @property
    def day_totals(self) -> list[int]:
        return [sum(self.units[f][i] for f in self.features) for i in range(len(self.days))]


@dataclass(frozen=True)
class CurrencyOrders:
    currency: str
    orders: int
    paid: int
    revenue: Decimal  # the totals of the orders paid (refunded ones not counted)
    refunded: int


@dataclass(frozen=True)
class EndpointState:
    """An endpoint as the overview shows it to every member: its URL without the query string
    (which may carry a token), and why it needs a look."""

    url: str
    failures: int
    failing_since: datetime | None
    disabled_reason: str


@dataclass(frozen=True)
class PendingDelivery:
    event_type: str
    url: str
    created_at: datetime
    attempts: int
    last_status_code: int | None


@dataclass(frozen=True)
class WebhookHealth:
    endpoints: int
    failing: list[EndpointState]  # active endpoints whose last deliveries failed
    disabled: list[EndpointState]
    pending: int
    oldest_pending: PendingDelivery | None

    @property
    def problems(self) -> int:
        return len(self.failing) + len(self.disabled)


def _day_key(tenant: Tenant, day: date) -> str:
    # The tenant's creation time tells apart a tenant made again under the same id and schema.
    return f"console:usage-day:{tenant.pk}:{tenant.created_at.timestamp():.6f}:{day.isoformat()}"


def _start(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


def usage_sums(start: date, end: date) -> QuerySet[Usage, tuple[date, str, int]]:
    """(day, feature, units) for the UTC days [start, end), read from `usage_recent_idx`."""
    return (
        Usage.objects.filter(created_at__gte=_start(start), created_at__lt=_start(end))
        .annotate(day=TruncDate("created_at", tzinfo=UTC))
        .values_list("day", "feature")
        .annotate(units=Sum("amount"))
        .order_by()
    )


def _sums(start: date, end: date) -> dict[date, dict[str, int]]:
    found: dict[date, dict[str, int]] = defaultdict(dict)
    for day, feature, units in usage_sums(start, end):
        found[day][feature] = int(units)
    return found


def daily_usage(*, tenant: Tenant, days: int = DAYS) -> DailyUsage:
    """Consumption per feature for each of the last `days` UTC days, today included."""
    now = clock.now().astimezone(UTC)
    today = now.date()
    span = [today - timedelta(days=offset) for offset in range(days - 1, -1, -1)]
    settled = [d for d in span if _start(d + timedelta(days=1)) + SETTLED <= now]
    cached: dict[str, Any] = cache.get_many([_day_key(tenant, d) for d in settled])
    per_day: dict[date, dict[str, int]] = {}
    missing: list[date] = []
    for day in settled:
        value = cached.get(_day_key(tenant, day))
        if value is None:
            missing.append(day)
        else:
            per_day[day] = dict(value)
    if missing:
        found = _sums(missing[0], missing[-1] + timedelta(days=1))
        fresh = {day: found.get(day, {}) for day in missing}
        per_day.update(fresh)
        cache.set_many(
            {_day_key(tenant, day): sorted(sums.items()) for day, sums in fresh.items()},
            CACHE_SECONDS,
        )
    unsettled = [d for d in span if d not in per_day]
    if unsettled:
        found = _sums(unsettled[0], today + timedelta(days=1))
        per_day.update({day: found.get(day, {}) for day in unsettled})
    totals: dict[str, int] = defaultdict(int)
    for sums in per_day.values():
        for feature, used in sums.items():
            totals[feature] += used
    ranked = sorted(totals, key=lambda f: (-totals[f], f))
    shown = ranked if len(ranked) <= CHART_FEATURES else ranked[: CHART_FEATURES - 1]
    rest = [f for f in ranked if f not in shown]
    units = {f: [per_day[d].get(f, 0) for d in span] for f in shown}
    features = list(shown)
    if rest:
        units["other"] = [sum(per_day[d].get(f, 0) for f in rest) for d in span]
        features.append("other")
    return DailyUsage(
        days=span,
        features=features,
        units=units,
        totals={f: sum(units[f]) for f in features},
    )


def orders_by_currency_query(*, since: datetime) -> QuerySet[Any, Any]:
    """Per currency: orders created since `since`, those paid, their revenue, those refunded."""
    return (
        Order.objects.filter(created_at__gte=since)
        .values("currency")
        .annotate(
            orders=Count("id"),
            paid=Count("id", filter=Q(status=OrderStatus.PAID)),
            revenue=Sum("total", filter=Q(status=OrderStatus.PAID)),
            refunded=Count("id", filter=Q(status=OrderStatus.REFUNDED)),
        )
        .order_by("currency")
    )


def orders_by_currency(*, days: int = DAYS) -> list[CurrencyOrders]:
    """Orders created in the last `days` days per currency: how many, how many paid, and the
    revenue (the totals of those paid; refunded ones are counted apart, without revenue)."""
    rows = orders_by_currency_query(since=clock.now() - timedelta(days=days))
    return [
        CurrencyOrders(
            currency=row["currency"],
            orders=row["orders"],
            paid=row["paid"],
            revenue=row["revenue"] or Decimal(0),
            refunded=row["refunded"],
        )
        for row in rows
    ]


def subscriptions_by_status() -> list[tuple[str, int]]:
    """(status label, count) of every status that has subscriptions, in the lifecycle's order."""
    counts = dict(
        Subscription.objects.values_list("status").annotate(n=Count("id")).order_by()
    )
    return [
        (str(label), counts[value])
        for value, label in SubscriptionStatus.choices
        if counts.get(value)
    ]


def shown_url(url: str) -> str:
    """An endpoint's URL without its query string (a token may travel there)."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", "")) + (
        "?…" if parts.query else ""
    )


def _state(endpoint: Endpoint) -> EndpointState:
    return EndpointState(
        url=shown_url(endpoint.url),
        failures=endpoint.consecutive_failures,
        failing_since=endpoint.failing_since,
        disabled_reason=endpoint.disabled_reason,
    )


def webhook_health(*, tenant: Tenant) -> WebhookHealth:
    """The tenant's endpoints that fail or are disabled, and its oldest pending delivery."""
    endpoints = list(endpoint_list(tenant_id=tenant.pk))
    pending = delivery_list(tenant_id=tenant.pk, status=DeliveryStatus.PENDING)
    count = pending.count()
    oldest = (
        pending.select_related("event", "endpoint").order_by("created_at").first()
        if count
        else None
    )
    return WebhookHealth(
        endpoints=len(endpoints),
        failing=[_state(e) for e in endpoints if e.is_active and e.consecutive_failures > 0],
        disabled=[_state(e) for e in endpoints if not e.is_active],
        pending=count,
        oldest_pending=None
        if oldest is None
        else PendingDelivery(
            event_type=oldest.event.type,
            url=shown_url(oldest.endpoint.url),
            created_at=oldest.created_at,
            attempts=oldest.attempts,
            last_status_code=oldest.last_status_code,
        ),
    )
