"""Tenant key self-service (`/keys`, scope `admin`) and the open signup (`/public/signup`)."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseBase
from ninja import Field, Query, Router, Status
from ninja.decorators import decorate_view

from billing_platform.core import errors, identity
from billing_platform.core.pagination import PageParams, page_data, paginate
from billing_platform.core.problems import PUBLIC_ERRORS, error_responses, problem_response
from billing_platform.core.ratelimits import limit_public
from billing_platform.core.schema_types import Schema
from tenants import presenters, selectors, services
from tenants.auth import tenant_auth
from tenants.models import Tenant
from tenants.schemas import (
    ApiKeyCreatedOut,
    ApiKeyCreateIn,
    ApiKeyPage,
    TenantCreatedOut,
)

keys_router = Router(tags=["keys"], auth=tenant_auth("admin"))
# Mounted at /public beside the public catalog (`billable.api.public_catalog`).
signup_router = Router(tags=["public"], auth=None)


# --- /keys (a tenant's own keys; scope `admin`)


@keys_router.get(
    "",
    response={200: ApiKeyPage, **error_responses()},
    operation_id="keys_list",
    summary="List this tenant's API keys",
)
def keys_list(request: HttpRequest, page: Query[PageParams]) -> dict:
    """This tenant's API keys, newest first, with prefix, scopes and last use; the secrets are never
    shown. Paginated with `limit` and `cursor`."""
    tenant_id = identity.caller(request).tenant.id  # type: ignore[union-attr]
    result = paginate(
        selectors.api_key_list(tenant_id=tenant_id), limit=page.limit, cursor=page.cursor
    )
    return page_data(result, presenters.api_key_data)


@keys_router.post(
    "",
    response={201: ApiKeyCreatedOut, **error_responses(409)},
    operation_id="keys_create",
    summary="Create an API key (the secret is shown once)",
)
def keys_create(request: HttpRequest, payload: ApiKeyCreateIn) -> Status:
    """Create an API key with `scopes` (default: all four, but never a scope the calling key lacks:
    403 `insufficient_scope`); the secret is in `key`, shown this once. 409 `too_many_keys` (50)."""
    caller = identity.caller(request)
    tenant = Tenant.objects.get(pk=caller.tenant.id)  # type: ignore[union-attr]
    issuer = selectors.api_key_get(tenant_id=tenant.pk, key_id=caller.key_id)
    key, raw = services.api_key_create(
        tenant=tenant,
        name=payload.name,
        scopes=payload.scopes,
        expires_at=payload.expires_at,
        issuer_scopes=caller.scopes,
        issuer_expires_at=issuer.expires_at,
    )
    return Status(201, {**presenters.api_key_data(key), "key": raw})


@keys_router.delete(
    "/{key_id}",
    response={204: None, **error_responses(404)},
    operation_id="keys_revoke",
    summary="Revoke an API key",
)
def keys_revoke(request: HttpRequest, key_id: str) -> HttpResponse:
    """Revoke an API key (sets `revoked_at`); it answers 401 `api_key_revoked` on every server
    process within a second. Answers 204."""
    tenant_id = identity.caller(request).tenant.id  # type: ignore[union-attr]
    key = selectors.api_key_get(tenant_id=tenant_id, key_id=key_id)
    services.api_key_revoke(key=key)
    return HttpResponse(status=204)


# --- /public/signup (open signup, when PLATFORM_OPEN_SIGNUP is on; rate-limited per IP)


class SignupIn(Schema):
    name: str = Field(..., min_length=1, max_length=200)
    slug: str = Field(..., min_length=1, max_length=64)
    email: str = Field(..., min_length=3, max_length=254, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def _signup_open(run: Callable[..., HttpResponseBase]) -> Callable[..., HttpResponseBase]:
    @wraps(run)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        if not settings.PLATFORM_OPEN_SIGNUP:
            return problem_response(errors.NotFound(f"No route for {request.path}."))
        try:
            limit_public(request, "signup", settings.SIGNUP_RATE_LIMIT)
        except errors.BillingError as exc:
            return problem_response(exc)
        return run(request, *args, **kwargs)

    return wrapper


@signup_router.post(
    "/signup",
    response={201: TenantCreatedOut, **error_responses(404, 409, common=PUBLIC_ERRORS)},
    operation_id="public_signup",
    summary="Open signup: create a tenant and its first key (when enabled)",
)
@decorate_view(_signup_open)
def signup(request: HttpRequest, payload: SignupIn) -> Status:
    """Create a tenant and its first key without a platform key, when the platform enables open
    signup (`PLATFORM_OPEN_SIGNUP`); otherwise the route is absent (404). Rate-limited per client
    IP."""
    tenant, _key, raw = services.tenant_onboard(
        name=payload.name, slug=payload.slug, contact_email=payload.email
    )
    return Status(201, {"tenant": tenant, "api_key": raw})


@signup_router.api_operation(
    ["GET", "PUT", "PATCH", "DELETE"], "/signup", include_in_schema=False, auth=None
)
def signup_other_methods(request: HttpRequest) -> HttpResponseBase:
    """While signup is closed the route is absent for every method, not only for POST."""
    if not settings.PLATFORM_OPEN_SIGNUP:
        return problem_response(errors.NotFound(f"No route for {request.path}."))
    return problem_response(errors.MethodNotAllowed(f"{request.method} is not allowed here."))

