"""The health checks: `/healthz` (the process is up) and `/readyz` (ready to serve)."""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.http import HttpRequest, HttpResponse, JsonResponse

from tenants.schema_migrations import migration_status

logger = logging.getLogger("billable.health")


def healthz(request: HttpRequest) -> HttpResponse:
    """The process is up: no database, no cache, no key."""
    return JsonResponse({"status": "ok"})


def _check_database() -> tuple[str | None, dict[str, Any] | None]:
    """The database answers; and how far the schemas are behind the code's migrations."""
    try:
        status = migration_status()
    except Exception as exc:
        return f"database: {exc.__class__.__name__}", None
    migrations = {
        "pending": status.pending,
        "public": status.public_missing,
        "tenant_schemas_behind": status.tenant_schemas_behind,
    }
    if status.public_missing:
        return f"{status.public_missing} migrations not applied", migrations
    if status.tenant_schemas_behind:
        return f"{status.tenant_schemas_behind} tenant schemas behind the code", migrations
    return None, migrations


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
    """Database reachable, migrations applied, Redis reachable when configured; 503 otherwise.

    Tenant schemas are checked from a short-lived cache (spare schemas and tenants created in the
    last minute aside, which are built while they exist): code whose migrations have not reached
    every tenant yet is not ready to serve them. `migrate_schemas` clears the cache when it ends.
    """
    database, migrations = _check_database()
    checks: dict[str, Any] = {"database": database, "redis": _check_cache()}
    failures = {name: problem for name, problem in checks.items() if problem}
    body: dict[str, Any] = {"status": "unavailable" if failures else "ready"}
    if failures:
        body["failures"] = failures
    if migrations is not None:
        body["migrations"] = migrations
    if failures:
        logger.warning("not ready: %s", failures)
        return JsonResponse(body, status=503)
    return JsonResponse(body)
