"""`/billing/balance` and `/billing/quota/consume`: what a customer can use, and using it."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from ninja import Query

from billable import clock, presenters, selectors
from billable.api.inputs import actor, customer_ref
from billable.api.routers import READ, WRITE, router
from billable.schemas import (
    BalanceExplainedListOut,
    BalanceExplainedOut,
    BalanceListOut,
    BalanceOut,
    ConsumeIn,
    CustomerQuery,
    UsageOut,
    UsagePage,
)
from billable.services import quota as quota_services
from billing_platform.core.db import own_transaction
from billing_platform.core.errors import ValidationFailed
from billing_platform.core.identity import caller
from billing_platform.core.pagination import PageParams, page_data, paginate
from billing_platform.core.problems import error_responses
from billing_platform.core.schema_types import UtcDateTime


@router.get(
    "/balance",
    auth=READ,
    response={
        200: BalanceExplainedOut | BalanceOut | BalanceExplainedListOut | BalanceListOut,
        **error_responses(404, 422),
    },
    operation_id="billing_balance",
    summary="Check what a customer can use (one feature, or every held feature); explain why",
    description=(
        "With `feature`, one feature's balance; without, every feature name and product key "
        "the customer holds. `explain=true` adds `explain`: the batches that cover the feature "
        "(units, unit cost, expiry, source), the active holds reserving units of it, the next "
        "allowance reset and, when it cannot be used, `reason`, a stable code. `as_of` (with "
        "`feature`) answers the balance at a past instant, recomputed from the ledger."
    ),
)
def balance(
    request: HttpRequest,
    customer: Query[CustomerQuery],
    feature: str | None = None,
    explain: bool = False,
    as_of: UtcDateTime | None = Query(  # noqa: B008
        None, description="A past instant: the balance then, from the ledger (needs `feature`)."
    ),
) -> dict[str, Any]:
    ref = customer_ref(customer)
    tenant = caller(request).tenant
    if as_of is not None:
        if not feature:
            raise ValidationFailed("as_of needs a feature.", field="as_of", msg="needs feature")
        if as_of > clock.now():
            raise ValidationFailed("as_of is not in the future.", field="as_of", msg="future")
        found = selectors.customer_find(ref)
        return presenters.balance_data(
            selectors.balance_as_of(customer=found, feature=feature, at=as_of)
        )
    if feature and not explain and tenant is not None:
        # The can-use check of every end user's every action: one statement, no transaction.
        return presenters.balance_data(
            selectors.balance_check(schema_name=tenant.schema_name, ref=ref, feature=feature)
        )
    found = selectors.customer_find(ref)
    if feature:
        return presenters.balance_explained_data(
            selectors.balance_explain(customer=found, feature=feature)
        )
    balances = selectors.balance_list(customer=found)
    if not explain:
        return presenters.balance_list_data(found, balances)
    return presenters.balance_explained_list_data(
        found,
        [
            selectors.balance_explain(customer=found, feature=item.feature, balance=item)
            for item in balances
        ],
    )


@router.post(
    "/quota/consume",
    auth=WRITE,
    response={200: UsageOut, **error_responses(402, 404, 409)},
    operation_id="billing_quota_consume",
    summary="Consume quota atomically (all or nothing)",
)
@own_transaction
def consume(request: HttpRequest, payload: ConsumeIn) -> dict[str, Any]:
    """Spend `amount` units of a feature (or a product key) in one step: all of them or none,
    soonest-expiring batches first. The answer is the usage with what is left, as balance reports
    it. 402 `quota_exhausted` (nothing usable) or `insufficient_quota` (too few), both with
    `remaining`. Retry safely with an `Idempotency-Key`. Sends `quota.consumed`."""
    result = quota_services.quota_consume(
        ref=customer_ref(payload),
        feature=payload.feature or payload.product_key or "",
        amount=payload.amount,
        action_type=payload.action_type,
        action_id=payload.action_id,
        metadata=payload.metadata,
        actor=actor(request),
    )
    return presenters.usage_data(
        result.usage, remaining=result.remaining, unlimited=result.unlimited,
        remaining_credits=result.remaining_credits,
    )


@router.get(
    "/usages",
    auth=READ,
    response={200: UsagePage, **error_responses(404)},
    operation_id="billing_usages",
    summary="A customer's usages (consumes and committed holds) with their metadata, newest first",
)
def usages(
    request: HttpRequest,
    customer: Query[CustomerQuery],
    page: Query[PageParams],
    feature: str | None = Query(None, max_length=64, description="Only this feature (any case)."),
    action_type: str | None = Query(None, max_length=64),
    since: UtcDateTime | None = None,
) -> dict[str, Any]:
    """A customer's usages (consumes and committed holds) with the metadata they were sent with,
    newest first; `feature`, `action_type` and `since` filter. Paginated with `limit` and
    `cursor`."""
    found = selectors.customer_require(customer_ref(customer))
    result = paginate(
        selectors.usages(customer=found, feature=feature, action_type=action_type, since=since),
        limit=page.limit,
        cursor=page.cursor,
        order=("-created_at", "-pk"),
    )
    return page_data(result, presenters.usage_record_data)
