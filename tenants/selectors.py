"""Reads of the public schema."""

from __future__ import annotations

from django.db.models import QuerySet

from billing_platform.core import errors
from tenants.models import ApiKey, Tenant, TenantStatus


def tenant_list() -> QuerySet[Tenant]:
    return Tenant.objects.exclude(status__in=[TenantStatus.SPARE, TenantStatus.BUILDING])


def tenant_get(*, slug: str) -> Tenant:
    tenant = tenant_list().filter(slug=slug.lower()).first()
    if tenant is None:
        raise errors.TenantNotFound()
    return tenant


def api_key_list(*, tenant_id: int) -> QuerySet[ApiKey]:
    return ApiKey.objects.filter(tenant_id=tenant_id)


def api_key_get(*, tenant_id: int, key_id: str) -> ApiKey:
    """A key of this tenant; another tenant's key id is 404 like an unknown one."""
    key = None
    try:
        key = ApiKey.objects.filter(tenant_id=tenant_id, pk=key_id).first()
    except Exception:  # not a UUID: a malformed id is simply unknown
        key = None
    if key is None:
        raise errors.ApiKeyNotFound()
    return key
