"""Trials: an offer granted once per person, whatever identities they come back with.

The identities a trial is checked against are hashed (`billable.selectors.identities`); the
hashes are kept in `TrialHistory` behind a unique constraint.
"""

from __future__ import annotations

from typing import Any

from django.db import IntegrityError, transaction

from billable import errors, signals
from billable.models import Customer, Offer, TrialHistory
from billable.selectors import customer_identity_hashes, trial_taken
from billable.services.grants import GrantResult, offer_grant
from billing_platform.core.db import service_atomic


def trial_grant(
    *,
    customer: Customer,
    offer: Offer,
    identities: dict[str, str | int] | None = None,
    reason: str = "",
    metadata: dict[str, Any] | None = None,
    actor: str = "",
) -> GrantResult:
    """Grant a trial unless the customer or any identity checked has had one here (409).

    The history rows (the customer's id among them) and the grant commit together behind a
    unique constraint, so concurrent requests for one person grant exactly once. Sends
    `trial_activated`.
    """
    hashes = customer_identity_hashes(customer, identities)
    with service_atomic():
        if trial_taken(customer, hashes):
            raise errors.TrialAlreadyUsed()
        result = offer_grant(
            customer=customer,
            offer=offer,
            kind="trial",
            reason=reason,
            metadata=metadata,
            actor=actor,
        )
        try:
            with transaction.atomic():
                TrialHistory.objects.bulk_create(
                    TrialHistory(identity_hash=value, grant=result.grant)
                    for value in hashes.current
                )
        except IntegrityError as exc:
            raise errors.TrialAlreadyUsed() from exc
        signals.trial_activated.send(
            sender=TrialHistory,
            grant=result.grant,
            customer=result.grant.customer,  # the acting one: a merge may have been followed
            batches=result.batches,
        )
    return result
