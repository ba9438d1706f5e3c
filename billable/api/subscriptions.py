"""`/billing/subscriptions`: customers' subscriptions to plans."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from django.http import HttpRequest
from ninja import Query, Status

from billable import presenters, selectors
from billable.api.inputs import customer_ref
from billable.api.routers import GRANT, READ, WRITE, router
from billable.schemas import (
    CustomerQuery,
    IdempotentIn,
    OrderOut,
    SubscriptionChangeIn,
    SubscriptionChangeOut,
    SubscriptionIn,
    SubscriptionOut,
    SubscriptionPage,
)
from billable.services import customers as customer_services
from billable.services import subscriptions as subscription_services
from billing_platform.core.pagination import PageParams, page_data, paginate
from billing_platform.core.problems import error_responses


@router.post(
    "/subscriptions",
    auth=GRANT,
    response={201: SubscriptionOut, **error_responses(404, 409, 422)},
    operation_id="billing_subscription_create",
    summary="Subscribe a customer to a plan (a trial, or a first period paid for or free)",
)
def subscription_create(request: HttpRequest, payload: SubscriptionIn) -> Status:
    """Subscribe a customer to a plan (its current version, or `version`). With `trial` and a plan
    with trial days a trial starts, once per person (409 `trial_already_used`, checked against
    `identities` too); otherwise the first period starts: confirm the order that pays it. 409
    `subscription_exists`, `plan_version_retired`; 422 `inactive_plan`."""
    customer = customer_services.customer_ensure(customer_ref(payload))
    subscription = subscription_services.subscription_create(
        customer=customer,
        plan=selectors.plan_get(key=payload.plan),
        version_number=payload.version,
        trial=payload.trial,
        identities=payload.identities,
        metadata=payload.metadata,
    )
    found = selectors.subscription_get(subscription_id=subscription.pk)
    return Status(201, presenters.subscription_data(found))


@router.get(
    "/subscriptions",
    auth=READ,
    response={200: SubscriptionPage, **error_responses(404)},
    operation_id="billing_subscription_list",
    summary="A customer's subscriptions, newest first",
)
def subscription_list(
    request: HttpRequest, customer: Query[CustomerQuery], page: Query[PageParams]
) -> dict[str, Any]:
    """A customer's subscriptions, newest first, each with its plan version, status and current
    period. Paginated with `limit` and `cursor`."""
    found = selectors.customer_find(customer_ref(customer))
    if found is None:
        return {"items": [], "next_cursor": None}
    result = paginate(
        selectors.subscription_list(customer=found), limit=page.limit, cursor=page.cursor
    )
    return page_data(result, presenters.subscription_data)


@router.get(
    "/subscriptions/{subscription_id}",
    auth=READ,
    response={200: SubscriptionOut, **error_responses(404)},
    operation_id="billing_subscription_get",
    summary="Get a subscription",
)
def subscription_get(request: HttpRequest, subscription_id: str) -> dict[str, Any]:
    """One subscription by id; 404 `subscription_not_found`."""
    return presenters.subscription_data(
        selectors.subscription_get(subscription_id=subscription_id)
    )


@router.post(
    "/subscriptions/{subscription_id}/cancel",
    auth=WRITE,
    response={200: SubscriptionOut, **error_responses(404, 409)},
    operation_id="billing_subscription_cancel",
    summary="Cancel at the end of the current period (a past-due subscription ends now)",
)
def subscription_cancel(
    request: HttpRequest, subscription_id: str, payload: IdempotentIn
) -> dict[str, Any]:
    """Cancel at the end of the current period (the customer keeps its rights until then); a
    past-due subscription ends at once. Sends `subscription.cancelled`."""
    sub = selectors.subscription_get(subscription_id=subscription_id)
    subscription_services.subscription_cancel(subscription=sub)
    return presenters.subscription_data(selectors.subscription_get(subscription_id=sub.pk))


@router.post(
    "/subscriptions/{subscription_id}/resume",
    auth=WRITE,
    response={200: SubscriptionOut, **error_responses(404, 409)},
    operation_id="billing_subscription_resume",
    summary="Undo a cancellation at period end, before that end",
)
def subscription_resume(
    request: HttpRequest, subscription_id: str, payload: IdempotentIn
) -> dict[str, Any]:
    """Undo a cancellation at period end, before that end comes: the subscription renews again."""
    sub = selectors.subscription_get(subscription_id=subscription_id)
    subscription_services.subscription_resume(subscription=sub)
    return presenters.subscription_data(selectors.subscription_get(subscription_id=sub.pk))


@router.post(
    "/subscriptions/{subscription_id}/renewal-order",
    auth=WRITE,
    response={200: OrderOut, 201: OrderOut, **error_responses(404, 409)},
    operation_id="billing_subscription_renewal_order",
    summary="The pending order that pays for the next period (made when none is pending)",
)
def subscription_renewal_order(
    request: HttpRequest, subscription_id: str, payload: IdempotentIn
) -> Status:
    """The pending order that pays for the next period: the one already pending, or a new one at the
    subscription's price. Confirming it renews the subscription. 409 `renewal_not_needed`,
    `renewal_out_of_order`."""
    sub = selectors.subscription_get(subscription_id=subscription_id)
    order, created = subscription_services.subscription_renewal_order(subscription=sub)
    found = selectors.order_get(order_id=str(order.pk))
    return Status(201 if created else 200, presenters.order_data(found))


@router.post(
    "/subscriptions/{subscription_id}/change",
    auth=GRANT,
    response={200: SubscriptionChangeOut, **error_responses(404, 409, 422)},
    operation_id="billing_subscription_change",
    summary="Change plan: at once (an upgrade, prorated) or at the end of the period",
)
def subscription_change(
    request: HttpRequest, subscription_id: str, payload: SubscriptionChangeIn
) -> dict[str, Any]:
    """Move to another plan or version: `at` `now` (an upgrade, with a prorated allowance) or
    `period_end` (scheduled). 409 `plan_change_not_allowed`, `plan_version_retired`."""
    sub = selectors.subscription_get(subscription_id=subscription_id)
    result = subscription_services.subscription_change(
        subscription=sub,
        plan=selectors.plan_get(key=payload.plan),
        version_number=payload.version,
        at=payload.at,
    )
    found = selectors.subscription_get(subscription_id=sub.pk)
    return presenters.subscription_change_data(
        replace(result, subscription=found)
    )


@router.post(
    "/subscriptions/{subscription_id}/pause",
    auth=WRITE,
    response={200: SubscriptionOut, **error_responses(404, 409)},
    operation_id="billing_subscription_pause",
    summary="Pause: the subscription's rights are frozen and its periods stop",
)
def subscription_pause(
    request: HttpRequest, subscription_id: str, payload: IdempotentIn
) -> dict[str, Any]:
    """Pause: the rights the subscription gives are frozen and its periods stop until unpaused. 409
    `pause_not_allowed`. Sends `subscription.paused`."""
    sub = selectors.subscription_get(subscription_id=subscription_id)
    subscription_services.subscription_pause(subscription=sub)
    return presenters.subscription_data(selectors.subscription_get(subscription_id=sub.pk))


@router.post(
    "/subscriptions/{subscription_id}/unpause",
    auth=WRITE,
    response={200: SubscriptionOut, **error_responses(404, 409)},
    operation_id="billing_subscription_unpause",
    summary="Unpause: the frozen rights come back and the periods go on, later by the pause",
)
def subscription_unpause(
    request: HttpRequest, subscription_id: str, payload: IdempotentIn
) -> dict[str, Any]:
    """Unpause: the frozen rights come back and the period goes on, ending later by the length of
    the pause. Sends `subscription.resumed`."""
    sub = selectors.subscription_get(subscription_id=subscription_id)
    subscription_services.subscription_unpause(subscription=sub)
    return presenters.subscription_data(selectors.subscription_get(subscription_id=sub.pk))
