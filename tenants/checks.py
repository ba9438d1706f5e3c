"""System checks of the platform: its configuration (every `manage.py` command) and its
deployment (`manage.py check --deploy`)."""

from __future__ import annotations

import re
from typing import Any

from django.conf import settings
from django.core.checks import Error, Tags, register
from django_tenants.postgresql_backend.base import is_valid_schema_name
from django_tenants.utils import get_public_schema_name

# A lowercase identifier PostgreSQL takes unquoted: the template is named in DDL and search_paths.
_IDENTIFIER = re.compile(r"[a-z_][a-z0-9_]{0,62}")
# Prefixes of the schemas of tenant rows (`t_<slug>`) and spares (`spare_…`).
_TENANT_PREFIXES = ("t_", "spare_")


@register(Tags.caches, deploy=True)
def shared_cache_check(app_configs: Any = None, **kwargs: Any) -> list[Error]:
    """Production needs Redis: key revocation and rate limits must hold across processes."""
    if settings.REDIS_URL:
        return []
    return [
        Error(
            "REDIS_URL is not set: key resolution and rate limits fall back to a per-process "
            "cache, so a revoked key keeps working in the other processes and every process "
            "counts its own limits.",
            hint="Set REDIS_URL (make run's fallback without Redis is for one process only).",
            id="billable.E001",
        )
    ]


@register()
def template_schema_check(app_configs: Any = None, **kwargs: Any) -> list[Error]:
    """`TENANT_BASE_SCHEMA` must name a schema of its own: not public, not a tenant's or spare's
    (onboarding and the worker create, migrate and clone it)."""
    name = getattr(settings, "TENANT_BASE_SCHEMA", None)
    if not name:
        return []  # cloning is turned off
    problem = None
    if not isinstance(name, str) or not _IDENTIFIER.fullmatch(name):
        problem = "is not a lowercase identifier (a-z, 0-9, _; at most 63 characters)"
    elif not is_valid_schema_name(name):
        problem = "is not a schema name django-tenants accepts"
    elif name == get_public_schema_name():
        problem = "is the public schema"
    elif name.startswith(_TENANT_PREFIXES):
        problem = "starts like a tenant's or a spare's schema (t_, spare_)"
    if problem is None:
        return []
    return [
        Error(
            f"TENANT_BASE_SCHEMA {name!r} {problem}.",
            hint="Name a schema of its own, e.g. tenant_template, or leave it empty to build "
            "every tenant schema by migrations.",
            id="billable.E002",
        )
    ]
