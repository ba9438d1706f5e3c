"""`/billing/balance` and `/billing/quota/consume`: what a customer can use, and using it."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from ninja import Query

from billable import presenters, selectors
from billable.api.inputs import actor, customer_ref
from billable.api.routers import READ, WRITE, router
from billable.schemas import BalanceListOut, BalanceOut, ConsumeIn, CustomerQuery, UsageOut
from billable.services import quota as quota_services
from billing_platform.core.db import own_transaction
from billing_platform.core.identity import caller
from billing_platform.core.problems import error_responses


@router.get(
    "/balance",
    auth=READ,
    response={200: BalanceOut | BalanceListOut, **error_responses(404)},
    operation_id="billing_balance",
    summary="Check what a customer can use (one feature, or every held feature)",
)
def balance(
    request: HttpRequest, customer: Query[CustomerQuery], feature: str | None = None
) -> dict[str, Any]:
    ref = customer_ref(customer)
    tenant = caller(request).tenant
    if feature and tenant is not None:
        # The can-use check of every end user's every action: one statement, no transaction.
        return presenters.balance_data(
            selectors.balance_check(schema_name=tenant.schema_name, ref=ref, feature=feature)
        )
    found = selectors.customer_find(ref)
    return presenters.balance_list_data(found, selectors.balance_list(customer=found))


@router.post(
    "/quota/consume",
    auth=WRITE,
    response={200: UsageOut, **error_responses(402, 404, 409)},
    operation_id="billing_quota_consume",
    summary="Consume quota atomically (all or nothing)",
)
@own_transaction
def consume(request: HttpRequest, payload: ConsumeIn) -> dict[str, Any]:
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
        result.usage, remaining=result.remaining, unlimited=result.unlimited
    )
