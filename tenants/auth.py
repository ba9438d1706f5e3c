"""The Ninja auth classes: a presented key → its caller (`resolve`), checked against the route.

Each class checks the key kind for the route and the operation's scope, counts the request
against the tenant's rate limit, binds the caller to the log context and selects the tenant's
schema (`activate_tenant`) for the rest of the request.
"""

from __future__ import annotations

from django.http import HttpRequest
from ninja.security import APIKeyHeader, HttpBearer

from billing_platform.core import errors
from billing_platform.core.db import activate_tenant
from billing_platform.core.identity import KeyContext
from billing_platform.core.observability import bind_caller
from billing_platform.core.ratelimits import limit_tenant
from billing_platform.core.request_state import request_state
from tenants import keys
from tenants.resolution import resolve


def presented_key(request: HttpRequest) -> str | None:
    """The key a request presents: `Authorization: Bearer …` or `X-API-Key: …`."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return request.headers.get("X-API-Key") or None


def _activate(request: HttpRequest, context: KeyContext) -> KeyContext:
    bind_caller(
        tenant_slug=context.tenant.slug if context.tenant is not None else None,
        key_id=context.key_id,
    )
    if context.tenant is not None:
        activate_tenant(context.tenant)
    return context


class _KeyAuth:
    """Shared checks: key kind for the route, then scope; selects the tenant's schema."""

    route_kind: str = keys.TENANT_PREFIX

    def __init__(self, scope: str | None = None) -> None:
        super().__init__()
        self.scope = scope

    def check(self, request: HttpRequest, raw: str | None) -> KeyContext | None:
        if not raw:
            return None
        state = request_state(request)
        if state.authenticated is not None and state.authenticated[:2] == (self, raw):
            # The request pipeline ran this very check before the operation ran it again.
            return state.authenticated[2]
        resolved = state.resolved
        # The request pipeline may have resolved this very key for the request already.
        context = resolved[1] if resolved is not None and resolved[0] == raw else resolve(raw)
        if context.kind != self.route_kind:
            raise errors.WrongKeyType(
                "Platform keys work only on /platform routes."
                if context.kind == keys.PLATFORM_PREFIX
                else "Tenant keys cannot be used on /platform routes."
            )
        if self.scope is not None and self.scope not in context.scopes:
            raise errors.InsufficientScope(
                f"This operation needs the {self.scope!r} scope.", required_scope=self.scope
            )
        if context.tenant is not None:
            limit_tenant(request, context.tenant.id, context.tenant.rate_limit)
        state.authenticated = (self, raw, _activate(request, context))
        return context


class TenantBearer(_KeyAuth, HttpBearer):
    """`Authorization: Bearer bk_…`."""

    openapi_description = "Tenant API key as a bearer token"

    def __call__(self, request: HttpRequest) -> KeyContext | None:
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer":
            return None
        return self.check(request, token.strip())

    def authenticate(self, request: HttpRequest, token: str) -> KeyContext | None:
        return self.check(request, token)


class TenantHeader(_KeyAuth, APIKeyHeader):
    """`X-API-Key: bk_…` (n8n's Header Auth credential)."""

    param_name = "X-API-Key"

    def authenticate(self, request: HttpRequest, key: str | None) -> KeyContext | None:
        return self.check(request, key)


class PlatformBearer(TenantBearer):
    """`Authorization: Bearer bpk_…`."""

    route_kind = keys.PLATFORM_PREFIX
    openapi_description = "Platform key as a bearer token"


class PlatformHeader(TenantHeader):
    """`X-API-Key: bpk_…`."""

    route_kind = keys.PLATFORM_PREFIX


def tenant_auth(scope: str) -> list[_KeyAuth]:
    return [TenantBearer(scope), TenantHeader(scope)]


def platform_auth() -> list[_KeyAuth]:
    return [PlatformBearer(), PlatformHeader()]
