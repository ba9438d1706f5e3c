"""Django's error handlers and the health checks, all answering problem+json or plain JSON."""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db import DEFAULT_DB_ALIAS, connections
from django.db.migrations.executor import MigrationExecutor
from django.http import HttpRequest, HttpResponse, JsonResponse

from billing_platform import errors
from billing_platform.problems import internal_error_response, problem_response

logger = logging.getLogger("billable.health")


def bad_request(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return problem_response(errors.BadRequest())


def permission_denied(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return problem_response(errors.Forbidden())


def not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return problem_response(errors.NotFound(f"No route for {request.path}."))


def server_error(request: HttpRequest) -> HttpResponse:
    return internal_error_response()


def healthz(request: HttpRequest) -> HttpResponse:
    """The process is up: no database, no cache, no key."""
    return JsonResponse({"status": "ok"})


def _check_database() -> str | None:
    try:
        connection = connections[DEFAULT_DB_ALIAS]
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        executor = MigrationExecutor(connection)
        plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
        # Only the shared apps are migrated in the public schema.
        pending = [m for m, _ in plan if m.app_label in _shared_labels()]
        if pending:
            return f"{len(pending)} migrations not applied"
    except Exception as exc:
        return f"database: {exc.__class__.__name__}"
    return None


def _shared_labels() -> set[str]:
    return {app.rsplit(".", 1)[-1] for app in settings.SHARED_APPS}


def _check_cache() -> str | None:
    if not settings.REDIS_URL:
        return None
    try:
        cache.set("readyz", "1", timeout=5)
        if cache.get("readyz") != "1":
            return "redis: read back failed"
    except Exception as exc:
        return f"redis: {exc.__class__.__name__}"
    return None


def readyz(request: HttpRequest) -> HttpResponse:
    """Database reachable, migrations applied, Redis reachable when configured."""
    checks: dict[str, Any] = {"database": _check_database(), "redis": _check_cache()}
    failures = {name: problem for name, problem in checks.items() if problem}
    if failures:
        logger.warning("not ready: %s", failures)
        return JsonResponse({"status": "unavailable", "failures": failures}, status=503)
    return JsonResponse({"status": "ready"})
