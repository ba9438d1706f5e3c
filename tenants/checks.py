"""System checks of the platform's deployment (`manage.py check --deploy`)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import Error, Tags, register


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
