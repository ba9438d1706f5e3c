"""`/billing/entitlements`: everything a customer is entitled to, in one answer."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from ninja import Query

from billable import presenters, selectors
from billable.api.inputs import customer_ref
from billable.api.routers import READ, router
from billable.schemas import CustomerQuery, EntitlementsExplainedOut, EntitlementsOut
from billing_platform.core.problems import error_responses


@router.get(
    "/entitlements",
    auth=READ,
    response={200: EntitlementsExplainedOut | EntitlementsOut, **error_responses(404)},
    operation_id="billing_entitlements",
    summary="Every feature, configuration value and subscription of a customer, for caching",
)
def entitlements(
    request: HttpRequest,
    customer: Query[CustomerQuery],
    explain: bool = Query(
        False, description="Add `explain` to each feature, as GET /billing/balance does."
    ),
) -> dict[str, Any]:
    """Everything a customer may use, in one answer an app can cache: every feature with its
    balance, the configuration values of its plans and its subscriptions. `explain=true` adds why
    each feature can or cannot be used."""
    found = selectors.customer_find(customer_ref(customer))
    return presenters.entitlements_data(
        selectors.entitlements_get(customer=found, explain=explain)
    )
