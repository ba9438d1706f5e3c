"""The health checks: `/healthz` (the process is up) and `/readyz` (ready to serve)."""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.http import HttpRequest, HttpResponse, JsonResponse

from tenants.schema_migrations import migration_status
from tenants.selectors import NodeHealth, citus_cluster_health

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


def _check_cluster() -> tuple[str | None, list[NodeHealth] | None]:
    """On a Citus coordinator, whether every primary node answers; (None, None) elsewhere."""
    try:
        nodes = citus_cluster_health()
    except Exception as exc:
        return f"cluster: {exc.__class__.__name__}", None
    return None, nodes


def _cluster_body(nodes: list[NodeHealth]) -> dict[str, Any]:
    return {
        "nodes": [
            {
                "node": health.node.address,
                "node_id": health.node.node_id,
                "role": health.role,
                "reachable": health.reachable,
                "schemas": health.schemas,
            }
            for health in nodes
        ],
        "unreachable": [health.node.address for health in nodes if not health.reachable],
    }


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

    On a Citus coordinator the body lists the cluster's primary nodes (`cluster`) and whether
    each answers. A worker that does not answer makes the status `degraded`, still 200: the
    tenants on the other nodes are served, and taking every server out of rotation would stop
    them too (`billable_citus_node_up` in the metrics is the signal to alert on).

    Tenant schemas are checked from a short-lived cache (spare schemas and tenants created in the
    last minute aside, which are built while they exist): code whose migrations have not reached
    every tenant yet is not ready to serve them. `migrate_schemas` clears the cache when it ends.
    """
    cluster_problem, nodes = _check_cluster()
    unreachable = [health for health in nodes or () if not health.reachable]
    database, migrations = _check_database()
    if unreachable and migrations is None:
        # The migration check reads every tenant schema, so it fails while a worker is down:
        # the tenants on the other nodes are served, which is what `degraded` says.
        database = None
    checks: dict[str, Any] = {
        "database": database, "cluster": cluster_problem, "redis": _check_cache()
    }
    failures = {name: problem for name, problem in checks.items() if problem}
    status = "unavailable" if failures else "degraded" if unreachable else "ready"
    body: dict[str, Any] = {"status": status}
    if failures:
        body["failures"] = failures
    if unreachable:
        body["degraded"] = {
            "cluster": f"{len(unreachable)} node(s) unreachable: "
            + ", ".join(health.node.address for health in unreachable)
            + "; the tenants placed there cannot be served"
        }
    if migrations is not None:
        body["migrations"] = migrations
    elif unreachable:
        body["migrations"] = None  # unknown until every node answers
    if nodes is not None:
        body["cluster"] = _cluster_body(nodes)
    if unreachable:
        logger.warning("degraded: %s", body["degraded"])
    if failures:
        logger.warning("not ready: %s", failures)
        return JsonResponse(body, status=503)
    return JsonResponse(body)
