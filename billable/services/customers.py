"""Customers and their external identities ("no hardlinks")."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

from cryptography.fernet import InvalidToken
from django.db import IntegrityError, transaction
from django.utils import timezone

from billable import errors, signals
from billable.models import Customer, ExternalIdentity, IdempotencyRecord, TrialHistory
from billable.services import trials
from billing_platform.core import crypto
from billing_platform.core.db import service_atomic
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
        raise ValidationFailed(
            "external_id must not be blank.",
            errors=[{"loc": ["body", "external_id"], "msg": "blank"}],
        )
    return text


def _by_id(customer_id: str) -> Customer | None:
    try:
        key = uuid.UUID(str(customer_id))
    except ValueError:
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


def _by_identity(provider: str, external_id: str) -> Customer | None:
    identity = (
        ExternalIdentity.objects.select_related("customer")
        .filter(provider=provider, external_id=external_id)
        .first()
    )
    return identity.customer if identity is not None else None


def _create_with_identity(provider: str, external_id: str) -> tuple[Customer, bool]:
    """Create a customer for an identity; a concurrent creator wins and we return theirs."""
    try:
        with transaction.atomic():
            customer = Customer.objects.create()
            ExternalIdentity.objects.create(
                customer=customer, provider=provider, external_id=external_id
            )
            return customer, True
    except IntegrityError:
        existing = _by_identity(provider, external_id)
        if existing is None:
            raise
        return existing, False


def customer_resolve(ref: CustomerRef, *, create: bool) -> Customer | None:
    """Find the customer a reference names; with `create`, an unknown identity's is created.

    Raises CustomerMismatch (422) when id and identity name different customers, and
    CustomerNotFound (404) for an unknown id.
    """
    by_id = _by_id(ref.customer_id) if ref.customer_id else None
    if ref.customer_id and by_id is None:
        raise errors.CustomerNotFound()
    if ref.external_id is None:
        return by_id
    external_id = normalise_external_id(ref.external_id)
    by_identity = _by_identity(ref.provider, external_id)
    if by_id is not None and by_identity is not None and by_id.pk != by_identity.pk:
        raise errors.CustomerMismatch()
    if by_id is not None and by_identity is None:
        raise errors.CustomerMismatch("That identity does not belong to this customer.")
    if by_identity is None and create:
        by_identity, _created = _create_with_identity(ref.provider, external_id)
    return by_identity


def customer_require(ref: CustomerRef) -> Customer:
    customer = customer_resolve(ref, create=False)
    if customer is None:
        raise errors.CustomerNotFound()
    return customer


def customer_ensure(ref: CustomerRef) -> Customer:
    customer = customer_resolve(ref, create=True)
    if customer is None:
        raise errors.CustomerNotFound()
    return customer


@dataclass(frozen=True)
class IdentifyResult:
    customer: Customer
    created: bool
    trial_eligible: bool


def customer_identify(
    *, provider: str, external_id: str, profile: dict[str, Any] | None = None
) -> IdentifyResult:
    """Register or look up an identity; shallow-merge `profile` into the customer's metadata."""
    external_id = normalise_external_id(external_id)
    with service_atomic():
        customer = _by_identity(provider, external_id)
        created = False
        if customer is None:
            customer, created = _create_with_identity(provider, external_id)
        if profile:
            customer = Customer.objects.select_for_update().get(pk=customer.pk)
            customer.metadata = {**(customer.metadata or {}), **profile}
            customer.save(update_fields=["metadata"])
        eligible = not TrialHistory.objects.filter(
            identity_hash__in=trials.customer_identity_hashes(customer)
        ).exists()
    return IdentifyResult(customer=customer, created=created, trial_eligible=eligible)


def customer_erase(*, customer: Customer) -> list[str]:
    """Erase identities and metadata; the ledger stays, anonymous.

    Covers the customers merged into this one (the same person's earlier ids), redacts the
    stored idempotent answers that name any of them, and sends `customer_erased` so stored
    events are scrubbed in the same transaction. Returns the erased customer ids.
    """
    with transaction.atomic():
        ids = [customer.pk]
        frontier = [customer.pk]
        while frontier:
            frontier = list(
                Customer.objects.filter(merged_into__in=frontier).values_list("pk", flat=True)
            )
            ids.extend(frontier)
        ExternalIdentity.objects.filter(customer_id__in=ids).delete()
        Customer.objects.filter(pk__in=ids).update(metadata={}, erased_at=timezone.now())
        texts = [str(pk) for pk in ids]
        _redact_stored_answers(texts)
        signals.customer_erased.send(sender=Customer, customer=customer, customer_ids=texts)
    return texts


REDACTED_FIELDS: dict[str, Any] = {"metadata": {}, "identities": [], "profile": {}}


def _redacted(value: Any) -> Any:
    if isinstance(value, dict):
        return {
            k: REDACTED_FIELDS[k] if k in REDACTED_FIELDS else _redacted(v)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_redacted(v) for v in value]
    return value


def _redact_stored_answers(customer_ids: list[str]) -> None:
    """Blank metadata and identities in kept idempotent answers that name these customers.

    A retry with such a key still replays (nothing is applied twice), without the personal data.
    """
    records = IdempotencyRecord.objects.select_for_update().filter(
        customer_ids__overlap=customer_ids, body__isnull=False
    )
    for record in records:
        if record.body is None:
            continue
        try:
            data = json.loads(crypto.decrypt_bytes(bytes(record.body)))
        except (InvalidToken, ValueError):
            continue
        body = json.dumps(_redacted(data), ensure_ascii=False).encode()
        record.body = crypto.encrypt_bytes(body)
        record.save(update_fields=["body"])
