"""`/billing/holds`: reserve quota now, keep what the work cost afterwards."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from ninja import Status

from billable import presenters, selectors
from billable.api.inputs import actor, customer_ref
from billable.api.routers import WRITE, router
from billable.schemas import HoldCommitIn, HoldIn, HoldOut, HoldReleaseIn
from billable.services import customers as customer_services
from billable.services import holds as hold_services
from billing_platform.core.problems import error_responses


@router.post(
    "/holds",
    auth=WRITE,
    response={201: HoldOut, **error_responses(402, 404, 409)},
    operation_id="billing_hold_create",
    summary="Reserve quota for work whose cost is known afterwards",
)
def hold_create(request: HttpRequest, payload: HoldIn) -> Status:
    """Reserve `amount` units for `ttl_seconds` (60–86 400, default 900) before work whose final
    cost is known later; reserved units cannot be consumed by others. Commit or release it; an
    expired hold returns its units. 402 as consume."""
    customer = customer_services.customer_ensure(customer_ref(payload))
    hold = hold_services.hold_create(
        customer=customer,
        feature=payload.feature,
        amount=payload.amount,
        ttl_seconds=payload.ttl_seconds,
        metadata=payload.metadata,
        actor=actor(request),
    )
    return Status(201, presenters.hold_data(hold))


@router.post(
    "/holds/{hold_id}/commit",
    auth=WRITE,
    response={200: HoldOut, **error_responses(404, 409)},
    operation_id="billing_hold_commit",
    summary="Keep part or all of a hold spent and return the rest",
)
def hold_commit(request: HttpRequest, hold_id: str, payload: HoldCommitIn) -> dict[str, Any]:
    """Spend `amount` of the hold (default: all of it) and return the rest. Repeating a commit
    returns the hold unchanged; committing a released or expired hold is 409 `hold_not_active`."""
    hold = selectors.hold_get(hold_id=hold_id)
    hold = hold_services.hold_commit(hold=hold, amount=payload.amount, actor=actor(request))
    return presenters.hold_data(hold)


@router.post(
    "/holds/{hold_id}/release",
    auth=WRITE,
    response={200: HoldOut, **error_responses(404, 409)},
    operation_id="billing_hold_release",
    summary="Return every unit of a hold",
)
def hold_release(request: HttpRequest, hold_id: str, payload: HoldReleaseIn) -> dict[str, Any]:
    """Return every reserved unit; nothing is spent. Repeating a release returns the hold unchanged;
    releasing a committed or expired hold is 409 `hold_not_active`."""
    hold = selectors.hold_get(hold_id=hold_id)
    return presenters.hold_data(hold_services.hold_release(hold=hold, actor=actor(request)))
