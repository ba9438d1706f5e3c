"""The platform operator's endpoints (`/platform`, platform key): tenants and their keys."""

from __future__ import annotations

from django.http import HttpRequest
from ninja import Query, Router, Status

from billing_platform.core.pagination import PageParams, paginate
from billing_platform.core.problems import error_responses
from billing_platform.operations.services import platform_tenant_onboard
from tenants import presenters, selectors, services
from tenants.auth import platform_auth
from tenants.models import Tenant
from tenants.schemas import (
    ApiKeyCreatedOut,
    PlatformKeyCreateIn,
    TenantCreatedOut,
    TenantCreateIn,
    TenantOut,
    TenantPage,
    TenantPatchIn,
)

platform_router = Router(tags=["platform"], auth=platform_auth())

# 429: past the per-IP limit of failed authentications, even a platform route answers 429.
_PLATFORM_ERRORS = (400, 401, 403, 413, 415, 422, 429, 503)


@platform_router.post(
    "/tenants",
    response={201: TenantCreatedOut, **error_responses(409, common=_PLATFORM_ERRORS)},
    operation_id="platform_tenant_create",
    summary="Onboard a tenant",
)
def tenant_create(request: HttpRequest, payload: TenantCreateIn) -> Status:
    """Onboard a tenant: its schema, its settings and a first API key with every scope (shown once,
    in `api_key`); `demo_catalog` installs the demo products and offers. 409 `slug_taken`; 422
    `invalid_slug`."""
    tenant, _key, raw = platform_tenant_onboard(
        name=payload.name,
        slug=payload.slug,
        rate_limit=payload.rate_limit,
        demo_catalog=payload.demo_catalog,
    )
    return Status(201, {"tenant": tenant, "api_key": raw})


@platform_router.get(
    "/tenants",
    response={200: TenantPage, **error_responses(common=_PLATFORM_ERRORS)},
    operation_id="platform_tenant_list",
    summary="List tenants",
)
def tenant_list(request: HttpRequest, page: Query[PageParams]) -> dict:
    """Every tenant, newest first, with its status and rate limit. Paginated with `limit` and
    `cursor`."""
    result = paginate(selectors.tenant_list(), limit=page.limit, cursor=page.cursor)
    return {"items": result.items, "next_cursor": result.next_cursor}


@platform_router.get(
    "/tenants/{slug}",
    response={200: TenantOut, **error_responses(404, common=_PLATFORM_ERRORS)},
    operation_id="platform_tenant_get",
    summary="Get a tenant",
)
def tenant_get(request: HttpRequest, slug: str) -> Tenant:
    """One tenant by slug; 404 `tenant_not_found`."""
    return selectors.tenant_get(slug=slug)


@platform_router.patch(
    "/tenants/{slug}",
    response={200: TenantOut, **error_responses(404, 409, common=_PLATFORM_ERRORS)},
    operation_id="platform_tenant_update",
    summary="Change a tenant's name, status or rate limit",
)
def tenant_update(request: HttpRequest, slug: str, payload: TenantPatchIn) -> Tenant:
    """Change a tenant's `name`, `status` (`active` or `suspended`: a suspended tenant's keys answer
    403) or `rate_limit`; takes effect on every server process within a second."""
    tenant = selectors.tenant_get(slug=slug)
    return services.tenant_update(
        tenant=tenant, name=payload.name, status=payload.status, rate_limit=payload.rate_limit
    )


@platform_router.delete(
    "/tenants/{slug}",
    response={202: TenantOut, **error_responses(404, common=_PLATFORM_ERRORS)},
    operation_id="platform_tenant_delete",
    summary="Delete a tenant (suspend and revoke now; the schema is dropped by a job)",
)
def tenant_delete(request: HttpRequest, slug: str, confirm: str | None = None) -> Status:
    """Delete a tenant: repeat its slug in `confirm`. It is suspended and its keys revoked at once;
    a job drops its schema. Answers 202. 422 `confirmation_required`."""
    tenant = selectors.tenant_get(slug=slug)
    return Status(202, services.tenant_delete_request(tenant=tenant, confirm=confirm))


@platform_router.post(
    "/tenants/{slug}/keys",
    response={201: ApiKeyCreatedOut, **error_responses(404, 409, common=_PLATFORM_ERRORS)},
    operation_id="platform_tenant_key_create",
    summary="Create an API key for a tenant",
)
def tenant_key_create(
    request: HttpRequest, slug: str, payload: PlatformKeyCreateIn
) -> Status:
    """Create an API key for a tenant (all scopes unless `scopes` is given); the secret is in `key`,
    shown this once."""
    tenant = selectors.tenant_get(slug=slug)
    key, raw = services.api_key_create(tenant=tenant, name=payload.name, scopes=payload.scopes)
    return Status(201, {**presenters.api_key_data(key), "key": raw})
