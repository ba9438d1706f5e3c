"""`/billing/currencies`: the codes a tenant prices in beside ISO 4217 (Telegram Stars, `XTR`)."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse
from ninja import Query, Status

from billable import presenters, selectors
from billable.api.inputs import patch_changes
from billable.api.routers import ADMIN, READ, router
from billable.schemas import CurrencyIn, CurrencyOut, CurrencyPage, CurrencyPatch
from billable.services import currencies as currency_services
from billing_platform.core.pagination import PageParams, page_data, paginate
from billing_platform.core.problems import error_responses

_CURRENCY_EXAMPLE: dict[str, Any] = {
    "requestBody": {"content": {"application/json": {"example": {
        "code": "XTR", "name": "Telegram Stars", "minor_digits": 0,
    }}}},
}

@router.get(
    "/currencies",
    auth=READ,
    response={200: CurrencyPage, **error_responses()},
    operation_id="billing_currency_list",
    summary="List the tenant's declared currencies (ISO 4217 codes need no declaring)",
)
def currency_list(request: HttpRequest, page: Query[PageParams]) -> dict[str, Any]:
    """Currencies the tenant declared for its prices (ISO 4217 codes such as USD need no declaring),
    with their minor digits. Paginated with `limit` and `cursor`."""
    result = paginate(selectors.currency_list(), limit=page.limit, cursor=page.cursor)
    return page_data(result, presenters.currency_data)


@router.post(
    "/currencies",
    auth=ADMIN,
    response={201: CurrencyOut, **error_responses(409)},
    operation_id="billing_currency_create",
    summary="Declare a currency with its minor digits",
    description="422 `iso_currency` for an ISO 4217 code; 409 `key_taken` when a product, "
    "offer, plan or currency already has the code.",
    openapi_extra=_CURRENCY_EXAMPLE,
)
def currency_create(request: HttpRequest, payload: CurrencyIn) -> Status:
    currency = currency_services.currency_create(
        code=payload.code, name=payload.name, minor_digits=payload.minor_digits
    )
    return Status(201, presenters.currency_data(currency))


@router.get(
    "/currencies/{code}",
    auth=READ,
    response={200: CurrencyOut, **error_responses(404)},
    operation_id="billing_currency_get",
    summary="Get a declared currency",
)
def currency_get(request: HttpRequest, code: str) -> dict[str, Any]:
    """One declared currency by code (any case); 404 `currency_not_found`."""
    return presenters.currency_data(selectors.currency_get(code=code))


@router.patch(
    "/currencies/{code}",
    auth=ADMIN,
    response={200: CurrencyOut, **error_responses(404, 409)},
    operation_id="billing_currency_update",
    summary="Rename a currency, or change its digits while nothing is priced in it",
    description="409 `currency_in_use` for new `minor_digits` once an offer, plan version or "
    "order uses the code.",
)
def currency_update(request: HttpRequest, code: str, payload: CurrencyPatch) -> dict[str, Any]:
    currency = selectors.currency_get(code=code)
    changes = patch_changes(payload)
    return presenters.currency_data(
        currency_services.currency_update(currency=currency, **changes)
    )


@router.delete(
    "/currencies/{code}",
    auth=ADMIN,
    response={204: None, **error_responses(404, 409)},
    operation_id="billing_currency_delete",
    summary="Withdraw a currency nothing is priced in (its code is free again)",
)
def currency_delete(request: HttpRequest, code: str) -> HttpResponse:
    """Withdraw a declared currency that no offer or plan is priced in; answers 204 and its code is
    free again. 409 `currency_in_use` otherwise."""
    currency = selectors.currency_get(code=code)
    currency_services.currency_delete(currency=currency)
    return HttpResponse(status=204)
