"""Reads of customers: references to them, their identities, their referrals."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db.models import Exists, OuterRef, QuerySet

from billable import errors
from billable.models import Customer, ExternalIdentity, Referral
from billable.selectors.ids import uuid_or_none
from billing_platform.core.errors import ValidationFailed

DEFAULT_PROVIDER = "default"


@dataclass(frozen=True)
class CustomerRef:
    """How a request names a customer: by id, or by (provider, external_id)."""

    customer_id: str | None = None
    external_id: str | None = None
    provider: str = DEFAULT_PROVIDER


def normalise_external_id(value: str | int) -> str:
    """An integer means its decimal string; trimmed; blank is refused (422)."""
    text = str(value).strip()
    if not text:
        raise ValidationFailed("external_id must not be blank.", field="external_id", msg="blank")
    return text


def customer_list(
    *, provider: str | None = None, external_id: str | None = None
) -> QuerySet[Customer]:
    queryset = Customer.objects.filter(merged_into__isnull=True).prefetch_related("identities")
    if provider is not None or external_id is not None:
        match = ExternalIdentity.objects.filter(customer=OuterRef("pk"))
        if provider is not None:
            match = match.filter(provider=provider)
        if external_id is not None:
            match = match.filter(external_id=str(external_id).strip())
        queryset = queryset.filter(Exists(match))
    return queryset


def customer_get(*, customer_id: str, follow_merge: bool = False) -> Customer:
    """The customer with this id; with `follow_merge`, the one it was merged into, if any."""
    key = uuid_or_none(customer_id)
    customer = (
        Customer.objects.prefetch_related("identities").filter(pk=key).first() if key else None
    )
    if customer is None:
        raise errors.CustomerNotFound()
    seen = {customer.pk}
    while follow_merge and customer.merged_into_id is not None:
        target = Customer.objects.prefetch_related("identities").get(pk=customer.merged_into_id)
        if target.pk in seen:
            break
        seen.add(target.pk)
        customer = target
    return customer


def customer_by_id(customer_id: str) -> Customer | None:
    """The customer with this id, or the one it was merged into; None if unknown."""
    key = uuid_or_none(customer_id)
    if key is None:
        return None
    customer = Customer.objects.filter(pk=key).first()
    seen = set()
    # A merged customer's id resolves to the customer it was merged into.
    while customer is not None and customer.merged_into_id is not None:
        if customer.pk in seen:
            break
        seen.add(customer.pk)
        customer = Customer.objects.filter(pk=customer.merged_into_id).first()
    return customer


def customer_by_identity(provider: str, external_id: str) -> Customer | None:
    identity = (
        ExternalIdentity.objects.select_related("customer")
        .filter(provider=provider, external_id=external_id)
        .first()
    )
    return identity.customer if identity is not None else None


def customer_find(ref: CustomerRef) -> Customer | None:
    """The customer a reference names; None for an identity nobody has yet.

    Raises CustomerMismatch (422) when id and identity name different customers, and
    CustomerNotFound (404) for an unknown id.
    """
    by_id = customer_by_id(ref.customer_id) if ref.customer_id else None
    if ref.customer_id and by_id is None:
        raise errors.CustomerNotFound()
    if ref.external_id is None:
        return by_id
    external_id = normalise_external_id(ref.external_id)
    by_identity = customer_by_identity(ref.provider, external_id)
    if by_id is not None and by_identity is not None and by_id.pk != by_identity.pk:
        raise errors.CustomerMismatch()
    if by_id is not None and by_identity is None:
        raise errors.CustomerMismatch("That identity does not belong to this customer.")
    return by_identity


def customer_require(ref: CustomerRef) -> Customer:
    """The customer a reference names (404 customer_not_found if nobody)."""
    customer = customer_find(ref)
    if customer is None:
        raise errors.CustomerNotFound()
    return customer


def referrer_chain(start: Customer) -> list[Any]:
    """The ids of `start`'s referrers up the chain, its own referrer first."""
    chain: list[Any] = []
    seen = {start.pk}
    current: Any = start.pk
    while True:
        current = (
            Referral.objects.filter(referee_id=current)
            .values_list("referrer_id", flat=True)
            .first()
        )
        if current is None or current in seen:
            return chain
        chain.append(current)
        seen.add(current)


def referrer_chain_contains(start: Customer, target: Customer) -> bool:
    """Whether `target` is `start` or one of its referrers, up the chain."""
    return target.pk == start.pk or target.pk in referrer_chain(start)


def referral_stats(*, customer: Customer) -> dict[str, int]:
    referrals = Referral.objects.filter(referrer=customer)
    return {
        "referred": referrals.count(),
        "rewarded": referrals.filter(rewarded_at__isnull=False).count(),
    }
