"""Public endpoints: no key, rate-limited per client IP.

`GET /public/{tenant_slug}/catalog` answers for tenants whose `public_catalog` setting is on;
`POST /public/signup` exists only while PLATFORM_OPEN_SIGNUP is true (404 otherwise, whatever
the body, exactly like an absent route).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.conf import settings
from django.db import connection
from django.http import HttpRequest, HttpResponseBase
from ninja import Field, Query, Router, Schema, Status
from ninja.decorators import decorate_view

from billable import presenters, selectors
from billable.schemas import OfferPage
from billing_platform import errors
from billing_platform.pagination import PageParams, page_data, paginate
from billing_platform.problems import error_responses, problem_response
from billing_platform.ratelimits import limit_public
from tenants.models import Tenant, TenantStatus
from tenants.schemas import TenantCreatedOut
from tenants.services import tenant_onboard

router = Router(tags=["public"], auth=None)

_PUBLIC_ERRORS = (400, 413, 415, 422, 429, 503)


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


@router.get(
    "/{tenant_slug}/catalog",
    response={200: OfferPage, **error_responses(404, common=_PUBLIC_ERRORS)},
    operation_id="public_catalog",
    summary="A tenant's public catalog (when the tenant publishes it)",
)
def public_catalog(
    request: HttpRequest, tenant_slug: str, page: Query[PageParams]
) -> dict[str, Any]:
    limit_public(request, "catalog", settings.PUBLIC_RATE_LIMIT)
    tenant = Tenant.objects.filter(slug=tenant_slug.lower(), status=TenantStatus.ACTIVE).first()
    if tenant is None or not tenant.merged_settings.get("public_catalog"):
        raise errors.NotFound("No public catalog here.")
    connection.set_schema(tenant.schema_name)  # type: ignore[attr-defined]
    result = paginate(selectors.catalog(), limit=page.limit, cursor=page.cursor)
    return page_data(result, presenters.offer_data)


@router.post(
    "/signup",
    response={201: TenantCreatedOut, **error_responses(404, 409, common=_PUBLIC_ERRORS)},
    operation_id="public_signup",
    summary="Open signup: create a tenant and its first key (when enabled)",
)
@decorate_view(_signup_open)
def signup(request: HttpRequest, payload: SignupIn) -> Status:
    tenant, _key, raw = tenant_onboard(
        name=payload.name, slug=payload.slug, contact_email=payload.email
    )
    return Status(201, {"tenant": tenant, "api_key": raw})


@router.api_operation(
    ["GET", "PUT", "PATCH", "DELETE"], "/signup", include_in_schema=False, auth=None
)
def signup_other_methods(request: HttpRequest) -> HttpResponseBase:
    """While signup is closed the route is absent for every method, not only for POST."""
    if not settings.PLATFORM_OPEN_SIGNUP:
        return problem_response(errors.NotFound(f"No route for {request.path}."))
    return problem_response(errors.MethodNotAllowed(f"{request.method} is not allowed here."))

