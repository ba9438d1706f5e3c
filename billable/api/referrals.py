"""`/billing/referrals`: who brought whom, and how many of them were rewarded."""

from __future__ import annotations

from django.http import HttpRequest
from ninja import Query, Status

from billable import presenters, selectors
from billable.api.inputs import customer_ref
from billable.api.routers import READ, WRITE, router
from billable.schemas import CustomerQuery, ReferralIn, ReferralOut, ReferralStatsOut
from billable.services import customers as customer_services
from billable.services import referrals as referral_services
from billing_platform.core.problems import error_responses


@router.post(
    "/referrals",
    auth=WRITE,
    response={200: ReferralOut, 201: ReferralOut, **error_responses(404, 409)},
    operation_id="billing_referral_attach",
    summary="Link a referrer and a referee",
    description="An identity nobody holds becomes a new customer's, the referrer's too, unless "
    "the tenant's setting `referral_require_known_referrer` is on: then an unknown referrer "
    "identity is 422 `unknown_referrer` and nothing is created.",
)
def referral_attach(request: HttpRequest, payload: ReferralIn) -> Status:
    # The referrer first: when the tenant refuses unknown referrers, nothing is created.
    referrer = referral_services.referral_referrer(customer_ref(payload.referrer))
    referee = customer_services.customer_ensure(customer_ref(payload.referee))
    result = referral_services.referral_attach(
        referrer=referrer, referee=referee, metadata=payload.metadata
    )
    body = presenters.referral_data(result.referral, created=result.created)
    return Status(201 if result.created else 200, body)


@router.get(
    "/referrals/stats",
    auth=READ,
    response={200: ReferralStatsOut, **error_responses(404)},
    operation_id="billing_referral_stats",
    summary="How many customers this customer referred, and how many were rewarded",
)
def referral_stats(request: HttpRequest, customer: Query[CustomerQuery]) -> dict[str, int]:
    """How many customers this customer referred, and how many of those referrals were rewarded."""
    found = selectors.customer_require(customer_ref(customer))
    return selectors.referral_stats(customer=found)
