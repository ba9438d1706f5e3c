"""`/billing/identify` and `/billing/customers`: who is billed, merged, listed and erased."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse
from ninja import Query

from billable import presenters, selectors
from billable.api.routers import ADMIN, GRANT, READ, WRITE, router
from billable.schemas import CustomerOut, CustomerPage, IdentifyIn, IdentifyOut, MergeIn, MergeOut
from billable.services import customers as customer_services
from billable.services import merge as merge_services
from billing_platform.core.pagination import PageParams, page_data, paginate
from billing_platform.core.problems import error_responses


@router.post(
    "/identify",
    auth=WRITE,
    response={200: IdentifyOut, **error_responses(409)},
    operation_id="billing_identify",
    summary="Register or look up a customer by an external identity",
)
def identify(request: HttpRequest, payload: IdentifyIn) -> dict[str, Any]:
    result = customer_services.customer_identify(
        provider=payload.provider,
        external_id=str(payload.external_id),
        profile=payload.profile,
    )
    return presenters.identify_data(result)


@router.post(
    "/customers/merge",
    auth=GRANT,
    response={200: MergeOut, **error_responses(404, 409)},
    operation_id="billing_customer_merge",
    summary="Merge the source customer into the target",
)
def customer_merge(request: HttpRequest, payload: MergeIn) -> dict[str, Any]:
    target = selectors.customer_get(customer_id=payload.target_customer_id)
    source = selectors.customer_get(customer_id=payload.source_customer_id)
    return presenters.merge_data(merge_services.customer_merge(target=target, source=source))


@router.get(
    "/customers",
    auth=READ,
    response={200: CustomerPage, **error_responses()},
    operation_id="billing_customer_list",
    summary="List customers (filter by provider and external_id)",
)
def customer_list(
    request: HttpRequest,
    page: Query[PageParams],
    provider: str | None = None,
    external_id: str | None = None,
) -> dict[str, Any]:
    result = paginate(
        selectors.customer_list(provider=provider, external_id=external_id),
        limit=page.limit,
        cursor=page.cursor,
    )
    return page_data(result, presenters.customer_data)


@router.get(
    "/customers/{customer_id}",
    auth=READ,
    response={200: CustomerOut, **error_responses(404)},
    operation_id="billing_customer_get",
    summary="Get a customer",
)
def customer_get(request: HttpRequest, customer_id: str) -> dict[str, Any]:
    return presenters.customer_data(selectors.customer_get(customer_id=customer_id))


@router.delete(
    "/customers/{customer_id}",
    auth=ADMIN,
    response={204: None, **error_responses(404)},
    operation_id="billing_customer_erase",
    summary="Erase a customer's identities and metadata (the ledger stays, anonymous)",
    description="A merged customer's id erases the customer it was merged into, with every "
    "customer merged into that one: the same person under earlier ids.",
)
def customer_erase(request: HttpRequest, customer_id: str) -> HttpResponse:
    customer = selectors.customer_get(customer_id=customer_id, follow_merge=True)
    customer_services.customer_erase(customer=customer)
    return HttpResponse(status=204)
