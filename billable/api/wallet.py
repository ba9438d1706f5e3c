"""`/billing/wallet`: a customer's units per product, usable batches and ledger entries."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from ninja import Query

from billable import presenters, selectors
from billable.api.inputs import customer_ref
from billable.api.routers import READ, router
from billable.schemas import BatchPage, CustomerQuery, LedgerPage, WalletOut
from billing_platform.core.pagination import PageParams, page_data, paginate
from billing_platform.core.problems import error_responses
from billing_platform.core.schema_types import UtcDateTime


@router.get(
    "/wallet",
    auth=READ,
    response={200: WalletOut, **error_responses(404)},
    operation_id="billing_wallet",
    summary="Units per product (null for period or unlimited access)",
)
def wallet(request: HttpRequest, customer: Query[CustomerQuery]) -> dict[str, Any]:
    """A customer's units per product key (null for period or unlimited access). 404
    `customer_not_found` for an unknown customer."""
    return selectors.wallet(customer=selectors.customer_require(customer_ref(customer)))


@router.get(
    "/wallet/batches",
    auth=READ,
    response={200: BatchPage, **error_responses(404)},
    operation_id="billing_wallet_batches",
    summary="Usable batches in consumption order",
)
def wallet_batches(
    request: HttpRequest,
    customer: Query[CustomerQuery],
    page: Query[PageParams],
    product: str | None = Query(None, max_length=64, description="Only this product's batches."),
) -> dict[str, Any]:
    """A customer's usable batches in the order consume spends them (soonest expiry first);
    `product` filters. Paginated with `limit` and `cursor`."""
    found = selectors.customer_require(customer_ref(customer))
    result = paginate(
        selectors.usable_batches(customer=found, product=product),
        limit=page.limit,
        cursor=page.cursor,
        order=("sort_expires", "created_at", "pk"),
    )
    return page_data(result, presenters.batch_data)


@router.get(
    "/wallet/transactions",
    auth=READ,
    response={200: LedgerPage, **error_responses(404)},
    operation_id="billing_wallet_transactions",
    summary="Ledger entries of a customer, newest first",
)
def wallet_transactions(
    request: HttpRequest,
    customer: Query[CustomerQuery],
    page: Query[PageParams],
    product: str | None = None,
    action_type: str | None = None,
    since: UtcDateTime | None = None,
) -> dict[str, Any]:
    """A customer's ledger: every credit and debit with its action, newest first; `product`,
    `action_type` and `since` filter. Paginated with `limit` and `cursor`."""
    found = selectors.customer_require(customer_ref(customer))
    result = paginate(
        selectors.ledger_entries(
            customer=found, product=product, action_type=action_type, since=since
        ),
        limit=page.limit,
        cursor=page.cursor,
        order=("-created_at", "-pk"),
    )
    return page_data(result, presenters.entry_data)
