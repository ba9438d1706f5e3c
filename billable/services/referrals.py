"""Referrals: one referrer per referee, no cycles, a reward once on the first payment."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from billable import errors, signals
from billable.models import Customer, Order, OrderStatus, Referral
from billable.selectors import CustomerRef, customer_find, offer_for_grant, referrer_chain_contains
from billable.services.customers import customer_ensure
from billable.services.grants import offer_grant
from billable.tenancy import current_settings
from billing_platform.core.db import service_atomic
from billing_platform.core.errors import BillingError

logger = logging.getLogger("billable.referrals")


@dataclass(frozen=True)
class AttachResult:
    referral: Referral
    created: bool


def referral_graph_lock() -> None:
    """Serialise changes of the tenant's referral links (attach, merge) until the transaction ends.

    A cycle check reads chains that a concurrent change could close (A→B racing B→A), which row
    locks alone cannot prevent. Callers take it before any row lock, so they all lock in one order.
    """
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_advisory_xact_lock(hashtext(%s))",
            [f"billable.referral_attach:{connection.schema_name}"],  # type: ignore[attr-defined]
        )


def referral_referrer(ref: CustomerRef) -> Customer:
    """The referrer a request names: created like any write's customer, unless the tenant's
    `referral_require_known_referrer` is on.

    Then an identity nobody holds raises UnknownReferrer (422) and nothing is created. An
    unknown `customer_id` is CustomerNotFound (404) either way.
    """
    if not current_settings().get("referral_require_known_referrer"):
        return customer_ensure(ref)
    customer = customer_find(ref)
    if customer is None:
        raise errors.UnknownReferrer()
    return customer


def referral_attach(
    *, referrer: Customer, referee: Customer, metadata: dict[str, Any] | None = None
) -> AttachResult:
    if referrer.pk == referee.pk:
        raise errors.SelfReferral()
    with service_atomic():
        referral_graph_lock()
        existing = Referral.objects.select_for_update().filter(referee=referee).first()
        if existing is not None:
            if existing.referrer_id == referrer.pk:
                return AttachResult(referral=existing, created=False)
            raise errors.AlreadyReferred()
        if referrer_chain_contains(referrer, referee):
            raise errors.ReferralCycle()
        try:
            with transaction.atomic():
                referral = Referral.objects.create(
                    referrer=referrer, referee=referee, metadata=metadata or {}
                )
        except IntegrityError as exc:
            current = Referral.objects.filter(referee=referee).first()
            if current is not None and current.referrer_id == referrer.pk:
                return AttachResult(referral=current, created=False)
            raise errors.AlreadyReferred() from exc
        signals.referral_attached.send(
            sender=Referral, referral=referral, referrer=referrer, referee=referee
        )
    return AttachResult(referral=referral, created=True)


def referral_reward_first_payment(*, customer: Customer, actor: str = "") -> None:
    """On a referee's first paid order, grant the tenant's reward offers, exactly once."""
    settings = current_settings()
    reward_sku = settings.get("referral_reward_sku")
    if not reward_sku:
        return
    # The referral row only (`of=("self",)`): a customer's row is locked through
    # `ledger.lock_customer` alone, by `offer_grant` below, never as a side effect of a join.
    referral = (
        Referral.objects.select_for_update(of=("self",))
        .select_related("referrer", "referee")
        .filter(referee=customer, rewarded_at__isnull=True)
        .first()
    )
    if referral is None:
        return
    paid = Order.objects.filter(
        customer=customer, status__in=[OrderStatus.PAID, OrderStatus.REFUNDED]
    ).count()
    if paid != 1:
        return
    referee_sku = settings.get("referee_reward_sku")
    try:
        reward_offer = offer_for_grant(reward_sku)
        referee_offer = offer_for_grant(referee_sku) if referee_sku else None
    except BillingError:
        # A misconfigured reward never blocks the payment that triggered it.
        logger.warning(
            "referral reward skipped: %s or %s is not grantable", reward_sku, referee_sku
        )
        return
    referrer_grant = offer_grant(
        customer=referral.referrer,
        offer=reward_offer,
        kind="referral",
        reason=f"referral of {customer.pk}",
        actor=actor,
    )
    referee_grant = None
    if referee_offer is not None:
        referee_grant = offer_grant(
            customer=customer,
            offer=referee_offer,
            kind="referral",
            reason="referred customer's first payment",
            actor=actor,
        )
    referral.rewarded_at = timezone.now()
    referral.save(update_fields=["rewarded_at"])
    signals.referral_rewarded.send(
        sender=Referral,
        referral=referral,
        referrer=referral.referrer,
        referee=customer,
        referrer_grant=referrer_grant.grant,
        referee_grant=referee_grant.grant if referee_grant else None,
    )
