"""The landing page at `/`: what this server is, and links to where people go from here.

Rendered from the template alone: no database, no cache, no session, so it costs what a health
check costs. Every other unknown path still answers the JSON 404 problem.
"""

from __future__ import annotations

from importlib import metadata

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_safe

# Served by the tenant console (issue 16) under its own path.
CONSOLE_URL = "/console/"


def _version() -> str:
    try:
        return metadata.version("billable")
    except metadata.PackageNotFoundError:  # a checkout run without installing the project
        return ""


VERSION = _version()


@require_safe
def landing(request: HttpRequest) -> HttpResponse:
    """The product's name and links: the console, the API docs and schema, health, the admin."""
    return render(
        request,
        "landing.html",
        {
            "version": VERSION,
            "console_url": CONSOLE_URL,
            "docs_url": reverse("api:openapi-view"),
            "openapi_url": reverse("api:openapi-json"),
            "healthz_url": reverse("healthz"),
            "readyz_url": reverse("readyz"),
            "admin_url": reverse("admin:index"),
        },
    )
