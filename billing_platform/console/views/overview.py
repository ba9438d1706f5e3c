"""The overview: the tenant at a glance — consumption per feature per day (a chart drawn here as
inline SVG, with its numbers as a table), active customers, orders and revenue per currency,
subscriptions by status and webhook health."""

from __future__ import annotations

from dataclasses import dataclass

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils.html import format_html_join
from django.utils.safestring import SafeString

from billing_platform.console import overview_selectors as reads
from billing_platform.console import selectors
from billing_platform.console.access import ConsoleContext, console_page

# The chart's drawing area, in SVG units (it scales to the page's width).
WIDTH, HEIGHT, LEFT, RIGHT, BOTTOM, TOP = 760, 220, 48, 24, 22, 8
# One colour a feature, told apart in greyscale too; "other" is grey.
COLOURS = ("#2457d6", "#e07a10", "#147a4b", "#9b3fc0", "#c0392b", "#0f8ea8")
OTHER_COLOUR = "#98a2b3"


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    colour: str
    title: str


@dataclass(frozen=True)
class Chart:
    bars: list[Bar]
    ticks: list[tuple[float, str]]  # (y, label) of the vertical axis
    labels: list[tuple[float, str]]  # (x, label) of the days shown under the bars
    legend: list[tuple[str, str, int]]  # (colour, feature, units in the period)
    width: int = WIDTH
    height: int = HEIGHT

    @property
    def marks(self) -> SafeString:
        """The axis, the bars with their `<title>`s and the day labels, as SVG markup (built
        here rather than in the template: a month of bars is hundreds of elements)."""
        ticks = format_html_join(
            "",
            '<line x1="{}" x2="{}" y1="{}" y2="{}" stroke="#e3e7ee"/><text x="{}" y="{}" '
            'dy="4" text-anchor="end" font-size="11" fill="#667085">{}</text>',
            ((LEFT, WIDTH - RIGHT, y, y, LEFT - 6, y, label) for y, label in self.ticks),
        )
        bars = format_html_join(
            "",
            '<rect x="{}" y="{}" width="{}" height="{}" fill="{}"><title>{}</title></rect>',
            ((b.x, b.y, b.width, b.height, b.colour, b.title) for b in self.bars),
        )
        labels = format_html_join(
            "",
            '<text x="{}" y="{}" dy="-6" text-anchor="middle" font-size="11" '
            'fill="#667085">{}</text>',
            ((x, HEIGHT, label) for x, label in self.labels),
        )
        return SafeString(ticks + bars + labels)


def _nice_top(value: int) -> int:
    """A round number at least `value`: 1, 2, 3, 4, 5, 6 or 8 times a power of ten."""
    step = 1
    while True:
        for factor in (1, 2, 3, 4, 5, 6, 8):
            if step * factor >= value:
                return step * factor
        step *= 10


def _units(value: float) -> str:
    return f"{value:,.0f}" if value == int(value) else f"{value:,.1f}"


def chart(usage: reads.DailyUsage) -> Chart:
    """Stacked bars, one a day, one segment a feature; every segment has its `<title>`."""
    plot_height = HEIGHT - BOTTOM - TOP
    top = _nice_top(max([*usage.day_totals, 1]))
    slot = (WIDTH - LEFT - RIGHT) / len(usage.days)
    colours = {
        feature: OTHER_COLOUR if feature == "other" else COLOURS[i % len(COLOURS)]
        for i, feature in enumerate(usage.features)
    }
    bars: list[Bar] = []
    for index, day in enumerate(usage.days):
        y = float(HEIGHT - BOTTOM)
        for feature in usage.features:
            units = usage.units[feature][index]
            if not units:
                continue
            height = units / top * plot_height
            y -= height
            bars.append(
                Bar(
                    x=round(LEFT + index * slot + 1, 1),
                    y=round(y, 2),
                    width=round(slot - 2, 1),
                    height=round(max(height, 0.5), 2),
                    colour=colours[feature],
                    title=f"{day:%Y-%m-%d}: {feature} {units:,}",
                )
            )
    ticks = [
        (round(HEIGHT - BOTTOM - plot_height * share, 1), _units(top * share))
        for share in (0, 0.5, 1)
    ]
    labels = [
        (round(LEFT + index * slot + slot / 2, 1), f"{day:%b %d}")
        for index, day in enumerate(usage.days)
        if index % 7 == (len(usage.days) - 1) % 7
    ]
    legend = [(colours[f], f, usage.totals[f]) for f in usage.features]
    return Chart(bars=bars, ticks=ticks, labels=labels, legend=legend)


@console_page()
def overview(request: HttpRequest, console: ConsoleContext) -> HttpResponse:
    usage = reads.daily_usage(tenant=console.tenant)
    orders = reads.orders_by_currency()
    return render(
        request,
        "console/overview.html",
        {
            "console": console,
            "active_customers": selectors.active_customer_count(),
            "usage": usage,
            "usage_rows": list(
                zip(usage.days, zip(*(usage.units[f] for f in usage.features), strict=True),
                    strict=True)
            )
            if usage.features
            else [],
            "chart": chart(usage),
            "days": reads.DAYS,
            "orders": orders,
            "orders_total": sum(row.orders for row in orders),
            "subscriptions": reads.subscriptions_by_status(),
            "webhooks": reads.webhook_health(tenant=console.tenant),
        },
    )


def not_found(request: HttpRequest, path: str = "") -> HttpResponse:
    """Any other path under /console/: the console's own 404 page."""
    return render(request, "console/not_found.html", status=404)
