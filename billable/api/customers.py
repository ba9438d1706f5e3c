"""`/billing/identify` and `/billing/customers`: who is billed, merged, imported, listed, given
more identities and erased."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse
from ninja import Query, Status

from billable import presenters, selectors
from billable.api.routers import ADMIN, GRANT, READ, WRITE, router
from billable.schemas import (
    CustomerImportIn,
    CustomerImportOut,
    CustomerOut,
    CustomerPage,
    IdentifyIn,
    IdentifyOut,
    IdentityAttachIn,
    MergeIn,
    MergeOut,
)
from billable.services import customers as customer_services
from billable.services import identities as identity_services
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
    """The usual first call of a workflow: find the customer with this `provider` and `external_id`,
    or create one. `profile` is shallow-merged into the customer's metadata; `trial_eligible` tells
    whether a trial grant would still be accepted."""
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
    """Move everything of the source customer (identities, batches, orders, holds, usages,
    referrals) to the target; the source then resolves to the target. 409 `identity_conflict`; 422
    `same_customer`, `customer_erased` (either customer was erased). Sends `customer.merged`."""
    target = selectors.customer_get(customer_id=payload.target_customer_id)
    source = selectors.customer_get(customer_id=payload.source_customer_id)
    return presenters.merge_data(merge_services.customer_merge(target=target, source=source))


_IMPORT_EXAMPLE = {
    "customers": [
        {
            "identities": [
                {"provider": "telegram", "external_id": 1001},
                {"provider": "email", "external_id": "ann@example.com"},
            ],
            "metadata": {"name": "Ann"},
            "trials_used": ["trial_7d"],
        },
        {"identities": [{"provider": "telegram", "external_id": "1002"}]},
    ]
}
_IMPORT_ANSWER = {
    "created": 1,
    "updated": 0,
    "unchanged": 0,
    "conflicts": [
        {
            "index": 1,
            "code": "identity_conflict",
            "detail": "These identities belong to 2 different customers; merge them first.",
        }
    ],
    "customers": [{"index": 0, "customer_id": "15292db8-5b6c-4f5e-9a51-0b0c8a6f0f51"}],
}


@router.post(
    "/customers/import",
    auth=ADMIN,
    response={200: CustomerImportOut, **error_responses()},
    operation_id="billing_customer_import",
    summary="Import customers with their identities and past trials (up to 1000 a call)",
    description="Each entry creates a customer holding its identities or, when one of them "
    "already belongs to a customer, adds the missing ones to that customer (its metadata "
    "shallow-merged). `trials_used` makes the person ineligible for every trial. An entry "
    "whose identities belong to two customers, or to a customer holding another external id "
    "for one of their providers, is not applied and is listed in `conflicts` "
    "(`identity_conflict`; `metadata_too_large` likewise); the others apply, in order. "
    "The call is one transaction (each entry in its own savepoint), so an Idempotency-Key "
    "retry replays the answer and applies nothing twice.",
    openapi_extra={
        "requestBody": {"content": {"application/json": {"example": _IMPORT_EXAMPLE}}},
        "responses": {200: {"content": {"application/json": {"example": _IMPORT_ANSWER}}}},
    },
)
def customer_import(request: HttpRequest, payload: CustomerImportIn) -> dict[str, Any]:
    entries = [
        identity_services.ImportEntry(
            identities=[(i.provider, str(i.external_id)) for i in entry.identities],
            metadata=entry.metadata,
            trials_used=entry.trials_used,
        )
        for entry in payload.customers
    ]
    return presenters.import_data(identity_services.customers_import(entries=entries))


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
    """Customers, newest first. `provider` and `external_id` filter (a filter, not a customer
    reference: no match is an empty page). Paginated with `limit` and `cursor`."""
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
    """One customer by id, with identities and metadata; a merged customer's id resolves to the
    customer it was merged into. 404 `customer_not_found`."""
    return presenters.customer_data(selectors.customer_get(customer_id=customer_id))


@router.post(
    "/customers/{customer_id}/identities",
    auth=WRITE,
    response={200: CustomerOut, 201: CustomerOut, **error_responses(404, 409)},
    operation_id="billing_customer_identity_attach",
    summary="Give a customer another identity",
    description="201 with the customer when the identity is attached; 200 when the customer "
    "already holds it. The external id is normalised as `POST /billing/identify` does. "
    "409 `identity_conflict` when another customer holds the identity, or the customer holds "
    "a different external id for the provider. A merged customer's id names the customer it "
    "was merged into; an erased customer is 404.",
    openapi_extra={
        "requestBody": {
            "content": {
                "application/json": {
                    "example": {"provider": "email", "external_id": "ann@example.com"}
                }
            }
        },
    },
)
def customer_identity_attach(
    request: HttpRequest, customer_id: str, payload: IdentityAttachIn
) -> Status:
    customer = selectors.customer_get(customer_id=customer_id, follow_merge=True)
    result = identity_services.identity_attach(
        customer=customer, provider=payload.provider, external_id=payload.external_id
    )
    return Status(201 if result.created else 200, presenters.customer_data(result.customer))


@router.delete(
    "/customers/{customer_id}/identities/{provider}/{path:external_id}",
    auth=ADMIN,
    response={204: None, **error_responses(404)},
    operation_id="billing_customer_identity_detach",
    summary="Take an identity from a customer",
    description="The external id is the rest of the path (it may hold `/`), URL-encoded and "
    "normalised as `POST /billing/identify` does. The trial history keeps the identity's "
    "hash: it cannot take another trial through a new customer. 404 `identity_not_found` when "
    "the customer does not hold it; a merged customer's id names the customer it was merged "
    "into.",
)
def customer_identity_detach(
    request: HttpRequest, customer_id: str, provider: str, external_id: str
) -> HttpResponse:
    customer = selectors.customer_get(customer_id=customer_id, follow_merge=True)
    identity_services.identity_detach(
        customer=customer, provider=provider, external_id=external_id
    )
    return HttpResponse(status=204)


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
