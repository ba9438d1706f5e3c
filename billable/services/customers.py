"""Customers and their external identities ("no hardlinks")."""

from __future__ import annotations

import json
from typing import Any

from cryptography.fernet import InvalidToken
from django.db import IntegrityError, transaction
from django.utils import timezone

from billable import errors, signals
from billable.metadata import metadata_check
from billable.models import Customer, ExternalIdentity, IdempotencyRecord
from billable.results import IdentifyResult
from billable.selectors import (
    CustomerRef,
    customer_by_identity,
    customer_find,
    customer_identity_hashes,
    normalise_external_id,
    trial_taken,
)
from billable.services.subscriptions import subscriptions_end_erased
from billing_platform.core import crypto
from billing_platform.core.db import service_atomic


def _create_with_identity(provider: str, external_id: str) -> tuple[Customer, bool]:
    """Create a customer for an identity; a concurrent creator wins and we return theirs."""
    try:
        with transaction.atomic():
            customer = Customer.objects.create()
            ExternalIdentity.objects.create(
                customer=customer, provider=provider, external_id=external_id
            )
            signals.customer_created.send(sender=Customer, customer=customer)
            return customer, True
    except IntegrityError:
        existing = customer_by_identity(provider, external_id)
        if existing is None:
            raise
        return existing, False


def customer_resolve(ref: CustomerRef, *, create: bool) -> Customer | None:
    """Find the customer a reference names; with `create`, an unknown identity's is created.

    Raises CustomerMismatch (422) when id and identity name different customers, and
    CustomerNotFound (404) for an unknown id.
    """
    customer = customer_find(ref)
    if customer is None and create and ref.external_id is not None:
        # Nobody has the identity (and no id was given): it becomes a new customer's.
        external_id = normalise_external_id(ref.external_id)
        customer, _created = _create_with_identity(ref.provider, external_id)
    return customer


def customer_ensure(ref: CustomerRef) -> Customer:
    customer = customer_resolve(ref, create=True)
    if customer is None:
        raise errors.CustomerNotFound()
    return customer


def customer_identify(
    *, provider: str, external_id: str, profile: dict[str, Any] | None = None
) -> IdentifyResult:
    """Register or look up an identity; shallow-merge `profile` into the customer's metadata.

    Raises MetadataTooLarge (422) when the merged metadata would pass 16 KiB.
    """
    external_id = normalise_external_id(external_id)
    with service_atomic():
        customer = customer_by_identity(provider, external_id)
        created = False
        if customer is None:
            customer, created = _create_with_identity(provider, external_id)
        if profile:
            customer = Customer.objects.select_for_update().get(pk=customer.pk)
            merged = {**(customer.metadata or {}), **profile}
            metadata_check(merged, before=customer.metadata)
            customer.metadata = merged
            customer.save(update_fields=["metadata"])
        eligible = not trial_taken(customer, customer_identity_hashes(customer))
    return IdentifyResult(customer=customer, created=created, trial_eligible=eligible)


def customer_erase(*, customer: Customer) -> list[str]:
    """Erase identities and metadata; the ledger stays, anonymous.

    Covers the customers merged into this one (the same person's earlier ids), ends their live
    subscriptions (cancelled now, their metadata blanked), redacts the
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
        # Their subscriptions end now: nothing renews, or is announced, for an erased person.
        subscriptions_end_erased(customer_ids=ids)
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
