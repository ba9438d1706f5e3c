"""Units given or taken back without an order: grants (trials, bonuses), adjustments, revokes."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from ninja import Status

from billable import presenters, selectors
from billable.api.inputs import actor, customer_ref
from billable.api.routers import GRANT, router
from billable.schemas import AdjustmentIn, AdjustmentOut, BatchOut, GrantIn, GrantOut, RevokeIn
from billable.services import customers as customer_services
from billable.services import grants as grant_services
from billable.services import trials as trial_services
from billing_platform.core.problems import error_responses


@router.post(
    "/grants",
    auth=GRANT,
    response={201: GrantOut, **error_responses(404, 409)},
    operation_id="billing_grant_create",
    summary="Activate an offer without payment (trial, bonus, referral, manual)",
)
def grant_create(request: HttpRequest, payload: GrantIn) -> Status:
    """Give a customer an offer's items without payment. `kind` is `trial`, `bonus`, `referral` or
    `manual`; a trial is refused with 409 `trial_already_used` when any of the `identities` (for
    example telegram id, email) already had one. Sends `grant.created` (and `trial.activated`)."""
    customer = customer_services.customer_ensure(customer_ref(payload))
    offer = selectors.offer_for_grant(payload.sku)
    if payload.kind == "trial":
        result = trial_services.trial_grant(
            customer=customer,
            offer=offer,
            identities=payload.identities,
            reason=payload.reason,
            metadata=payload.metadata,
            actor=actor(request),
        )
    else:
        result = grant_services.offer_grant(
            customer=customer,
            offer=offer,
            kind=payload.kind,
            reason=payload.reason,
            expires_at=payload.expires_at,
            metadata=payload.metadata,
            actor=actor(request),
        )
    return Status(201, presenters.grant_data(result.grant, result.batches))


@router.post(
    "/adjustments",
    auth=GRANT,
    response={201: AdjustmentOut, **error_responses(402, 404, 409)},
    operation_id="billing_adjustment_create",
    summary="Credit or debit a customer's units of a product (support fixes)",
)
def adjustment_create(request: HttpRequest, payload: AdjustmentIn) -> Status:
    """A correction with a `reason`: a positive `amount` credits a new batch of the product, a
    negative one debits the customer's usable batches (402 `insufficient_quota` when fewer are
    left). Sends `adjustment.created`."""
    customer = customer_services.customer_ensure(customer_ref(payload))
    result = grant_services.adjustment_create(
        customer=customer,
        product_key=payload.product,
        amount=payload.amount,
        reason=payload.reason,
        expires_at=payload.expires_at,
        actor=actor(request),
    )
    return Status(201, presenters.adjustment_data(result.adjustment, result.batches))


@router.post(
    "/batches/{batch_id}/revoke",
    auth=GRANT,
    response={200: BatchOut, **error_responses(404, 409)},
    operation_id="billing_batch_revoke",
    summary="Revoke one batch (a debit of what remained)",
)
def batch_revoke(request: HttpRequest, batch_id: str, payload: RevokeIn) -> dict[str, Any]:
    """Take back what is left of one batch: it becomes `revoked` and a debit of its remaining units
    is written to the ledger. 404 `batch_not_found`; 409 `batch_not_active`."""
    batch = selectors.batch_get(batch_id=batch_id)
    batch = grant_services.batch_revoke(batch=batch, reason=payload.reason, actor=actor(request))
    return presenters.batch_data(batch)
