"""`GET /public/{tenant_slug}/catalog`: a tenant's catalog without a key, when it publishes it.

Rate-limited per client IP; answers only for active tenants whose `public_catalog` setting is on.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.http import HttpRequest
from ninja import Query, Router

from billable import presenters, selectors
from billable.schemas import OfferPage
from billing_platform.core import errors
from billing_platform.core.db import activate_tenant
from billing_platform.core.pagination import PageParams, page_data, paginate
from billing_platform.core.problems import PUBLIC_ERRORS, error_responses
from billing_platform.core.ratelimits import limit_public
from tenants.models import Tenant, TenantStatus

router = Router(tags=["public"], auth=None)


@router.get(
    "/{tenant_slug}/catalog",
    response={200: OfferPage, **error_responses(404, common=PUBLIC_ERRORS)},
    operation_id="public_catalog",
    summary="A tenant's public catalog (when the tenant publishes it)",
)
def public_catalog(
    request: HttpRequest, tenant_slug: str, page: Query[PageParams]
) -> dict[str, Any]:
    """The active offers of a tenant that publishes its catalog (the `public_catalog` setting), for
    a pricing page; needs no key and is rate-limited per client IP. 404 when the tenant does not
    exist or does not publish."""
    limit_public(request, "catalog", settings.PUBLIC_RATE_LIMIT)
    tenant = Tenant.objects.filter(slug=tenant_slug.lower(), status=TenantStatus.ACTIVE).first()
    if tenant is None or not tenant.merged_settings.get("public_catalog"):
        raise errors.NotFound("No public catalog here.")
    activate_tenant(tenant)
    result = paginate(selectors.catalog(), limit=page.limit, cursor=page.cursor)
    return page_data(result, presenters.offer_data)
