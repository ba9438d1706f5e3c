"""The overview: the tenant at a glance (later work adds the charts)."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from billing_platform.console import selectors
from billing_platform.console.access import ConsoleContext, console_page


@console_page()
def overview(request: HttpRequest, console: ConsoleContext) -> HttpResponse:
    return render(
        request,
        "console/overview.html",
        {"console": console, "active_customers": selectors.active_customer_count()},
    )


def not_found(request: HttpRequest, path: str = "") -> HttpResponse:
    """Any other path under /console/: the console's own 404 page."""
    return render(request, "console/not_found.html", status=404)
