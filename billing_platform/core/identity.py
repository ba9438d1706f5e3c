"""Who is calling: the authenticated key and a snapshot of its tenant.

Built by the key resolution (`tenants.resolution`), carried as `request.auth`, and set as
django-tenants' `connection.tenant` for the request, so every layer can read the caller without
importing the code that resolved it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.http import HttpRequest

AlertRuleEntry = tuple[str, str, int | None, str | None, tuple[tuple[str, int], ...]]


@dataclass(frozen=True)
class TenantRef:
    """What a request knows of its tenant; also django-tenants' `connection.tenant`."""

    id: int
    slug: str
    schema_name: str
    status: str
    rate_limit: str
    settings: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)
    # Active webhook endpoints: ((endpoint id, subscribed types or () for all), ...).
    webhooks: tuple[tuple[str, tuple[str, ...]], ...] = ()
    # Active alert rules of the tenant's schema:
    # ((rule id, feature or "*", plan id, plan key, ((threshold type, value), ...)), ...).
    alert_rules: tuple[AlertRuleEntry, ...] = ()


@dataclass(frozen=True)
class KeyContext:
    """The authenticated caller of a request (`request.auth`)."""

    kind: str
    key_id: str
    name: str
    scopes: frozenset[str]
    tenant: TenantRef | None

    @property
    def actor(self) -> str:
        return f"key:{self.key_id}"


def caller(request: HttpRequest) -> KeyContext:
    """The caller of an authenticated operation (Ninja sets `request.auth` from the auth class)."""
    context: KeyContext = request.auth  # type: ignore[attr-defined]
    return context
