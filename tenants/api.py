"""Platform endpoints (`/platform`, platform key) and tenant key self-service (`/keys`)."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from ninja import Query, Router, Status

from billing_platform.pagination import PageParams, page_data, paginate
from billing_platform.problems import error_responses
from tenants import selectors, services
from tenants.auth import KeyContext, platform_auth, tenant_auth
from tenants.models import ApiKey, Tenant
from tenants.schemas import (
    ApiKeyCreatedOut,
    ApiKeyCreateIn,
    ApiKeyPage,
    PlatformKeyCreateIn,
    TenantCreatedOut,
    TenantCreateIn,
    TenantOut,
    TenantPage,
    TenantPatchIn,
)

platform_router = Router(tags=["platform"], auth=platform_auth())
keys_router = Router(tags=["keys"], auth=tenant_auth("admin"))

_PLATFORM_ERRORS = (400, 401, 403, 413, 415, 422, 503)


def key_out(key: ApiKey) -> dict:
    return {
        "id": str(key.pk),
        "name": key.name,
        "prefix": key.prefix,
        "scopes": key.scopes,
        "created_at": key.created_at,
        "last_used_at": key.last_used_at,
        "expires_at": key.expires_at,
        "revoked_at": key.revoked_at,
    }


def _context(request: HttpRequest) -> KeyContext:
    return request.auth  # type: ignore[attr-defined]


# --- /platform/tenants


@platform_router.post(
    "/tenants",
    response={201: TenantCreatedOut, **error_responses(409, common=_PLATFORM_ERRORS)},
    operation_id="platform_tenant_create",
    summary="Onboard a tenant",
)
def tenant_create(request: HttpRequest, payload: TenantCreateIn) -> Status:
    tenant, _key, raw = services.tenant_onboard(
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
    result = paginate(selectors.tenant_list(), limit=page.limit, cursor=page.cursor)
    return {"items": result.items, "next_cursor": result.next_cursor}


@platform_router.get(
    "/tenants/{slug}",
    response={200: TenantOut, **error_responses(404, common=_PLATFORM_ERRORS)},
    operation_id="platform_tenant_get",
    summary="Get a tenant",
)
def tenant_get(request: HttpRequest, slug: str) -> Tenant:
    return selectors.tenant_get(slug=slug)


@platform_router.patch(
    "/tenants/{slug}",
    response={200: TenantOut, **error_responses(404, 409, common=_PLATFORM_ERRORS)},
    operation_id="platform_tenant_update",
    summary="Change a tenant's name, status or rate limit",
)
def tenant_update(request: HttpRequest, slug: str, payload: TenantPatchIn) -> Tenant:
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
    tenant = selectors.tenant_get(slug=slug)
    key, raw = services.api_key_create(tenant=tenant, name=payload.name, scopes=payload.scopes)
    return Status(201, {**key_out(key), "key": raw})


# --- /keys (a tenant's own keys; scope `admin`)


@keys_router.get(
    "",
    response={200: ApiKeyPage, **error_responses()},
    operation_id="keys_list",
    summary="List this tenant's API keys",
)
def keys_list(request: HttpRequest, page: Query[PageParams]) -> dict:
    tenant_id = _context(request).tenant.id  # type: ignore[union-attr]
    result = paginate(
        selectors.api_key_list(tenant_id=tenant_id), limit=page.limit, cursor=page.cursor
    )
    return page_data(result, key_out)


@keys_router.post(
    "",
    response={201: ApiKeyCreatedOut, **error_responses(409)},
    operation_id="keys_create",
    summary="Create an API key (the secret is shown once)",
)
def keys_create(request: HttpRequest, payload: ApiKeyCreateIn) -> Status:
    tenant_id = _context(request).tenant.id  # type: ignore[union-attr]
    tenant = Tenant.objects.get(pk=tenant_id)
    key, raw = services.api_key_create(
        tenant=tenant, name=payload.name, scopes=payload.scopes, expires_at=payload.expires_at
    )
    return Status(201, {**key_out(key), "key": raw})


@keys_router.delete(
    "/{key_id}",
    response={204: None, **error_responses(404)},
    operation_id="keys_revoke",
    summary="Revoke an API key",
)
def keys_revoke(request: HttpRequest, key_id: str) -> HttpResponse:
    tenant_id = _context(request).tenant.id  # type: ignore[union-attr]
    key = selectors.api_key_get(tenant_id=tenant_id, key_id=key_id)
    services.api_key_revoke(key=key)
    return HttpResponse(status=204)
