"""Identities: another one attached to a customer, and customers imported with theirs in bulk.

A customer holds at most one identity per provider (merge refuses two customers with different
external ids for one provider, `identity_conflict`); both services keep that rule. An identity
belongs to one customer: the `identity_unique` constraint settles concurrent claims, and the
loser answers `identity_conflict`, never a 500.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import reduce
from operator import or_
from typing import Any, Literal

from django.db import IntegrityError, transaction
from django.db.models import Q

from billable import errors, signals
from billable.metadata import metadata_check
from billable.models import Customer, ExternalIdentity, TrialHistory
from billable.results import IdentityAttachResult, ImportConflict, ImportResult
from billable.selectors import (
    customer_by_identity,
    customer_identity_hashes,
    identity_hash,
    identity_secret,
    trial_taken,
)
from billable.selectors import normalise_external_id as _normalise
from billing_platform.core.db import service_atomic

Pair = tuple[str, str]


def _lock_live(customer: Customer) -> Customer:
    """Lock the customer's row; one merged meanwhile is followed to the customer it went into.

    Raises CustomerNotFound (404) for an erased customer.
    """
    seen = set()
    pk = customer.pk
    while True:
        locked = Customer.objects.select_for_update().filter(pk=pk).first()
        if locked is None or locked.erased_at is not None or locked.pk in seen:
            raise errors.CustomerNotFound()
        if locked.merged_into_id is None:
            return locked
        seen.add(locked.pk)
        pk = locked.merged_into_id


def _held(customer: Customer) -> list[Pair]:
    return list(
        ExternalIdentity.objects.filter(customer=customer).values_list("provider", "external_id")
    )


def _other_for_provider(held: Sequence[Pair], provider: str, external_id: str) -> str | None:
    """The different external id the customer already holds for this provider, if any."""
    return next((e for p, e in held if p == provider and e != external_id), None)


def identity_attach(
    *, customer: Customer, provider: str, external_id: str | int
) -> IdentityAttachResult:
    """Give the customer one more identity (normalised as `customer_identify` does).

    Holding it already changes nothing (`created` false). Raises IdentityConflict (409) when
    another customer holds it, or when the customer holds a different external id for the
    provider; CustomerNotFound (404) for an erased customer. Locks the customer's row.
    """
    external_id = _normalise(external_id)
    with service_atomic():
        customer = _lock_live(customer)
        held = _held(customer)
        created = (provider, external_id) not in held
        if created:
            owner = customer_by_identity(provider, external_id)
            if owner is not None:
                raise errors.IdentityConflict("Another customer holds this identity.")
            if _other_for_provider(held, provider, external_id) is not None:
                raise errors.IdentityConflict(
                    f"The customer already holds a different {provider!r} identity."
                )
            try:
                with transaction.atomic():
                    ExternalIdentity.objects.create(
                        customer=customer, provider=provider, external_id=external_id
                    )
            except IntegrityError as exc:
                # A concurrent identify or attach gave it to another customer first.
                raise errors.IdentityConflict("Another customer holds this identity.") from exc
            _carry_trial(customer, [(provider, external_id)])
        customer = Customer.objects.prefetch_related("identities").get(pk=customer.pk)
    return IdentityAttachResult(customer=customer, created=created)


def _carry_trial(
    customer: Customer, pairs: Sequence[Pair], secret: bytes | None = None
) -> None:
    """A customer who has had a trial passes it on to the identities it gains, so that taking
    one away later (or the import of another customer with it) opens no second trial."""
    if not pairs or not trial_taken(customer, customer_identity_hashes(customer)):
        return
    TrialHistory.objects.bulk_create(
        (
            TrialHistory(identity_hash=value)
            for value in sorted({identity_hash(kind, v, secret=secret) for kind, v in pairs})
        ),
        ignore_conflicts=True,
    )


def identity_detach(*, customer: Customer, provider: str, external_id: str | int) -> None:
    """Take one identity from the customer; its trial history stays (hashes are not undone).

    Raises IdentityNotFound (404) when the customer does not hold it, CustomerNotFound (404)
    for an erased customer. Locks the customer's row.
    """
    external_id = _normalise(external_id)
    with service_atomic():
        customer = _lock_live(customer)
        deleted, _ = ExternalIdentity.objects.filter(
            customer=customer, provider=provider, external_id=external_id
        ).delete()
        if not deleted:
            raise errors.IdentityNotFound()


# --- Bulk import


@dataclass(frozen=True)
class ImportEntry:
    """One customer of an import: identities already validated (trimmed, one per provider)."""

    identities: list[Pair]
    metadata: dict[str, Any] = field(default_factory=dict)
    trials_used: list[str] = field(default_factory=list)


Outcome = Literal["created", "updated", "unchanged"]


def customers_import(*, entries: Sequence[ImportEntry]) -> ImportResult:
    """Create or complete a customer per entry, in order; record their past trials.

    Each entry runs in its own savepoint: one that cannot apply (its identities belong to two
    customers, or to a customer holding another external id for one of their providers, 409
    `identity_conflict`; shallow-merged metadata over 16 KiB, `metadata_too_large`) leaves
    nothing behind and is reported among `conflicts`, while the others apply. The call is one
    transaction (the request's), so it commits whole, with its idempotency record. A later
    entry sees what the earlier ones did. Each customer created sends `customer_created`.
    """
    secret = identity_secret()
    counts: dict[Outcome, int] = {"created": 0, "updated": 0, "unchanged": 0}
    conflicts: list[ImportConflict] = []
    customers: list[tuple[int, str]] = []
    with service_atomic():
        for index, entry in enumerate(entries):
            try:
                outcome, customer = _import_entry(entry, secret)
            except (errors.IdentityConflict, errors.MetadataTooLarge,
                    errors.CustomerNotFound) as exc:  # the last: erased meanwhile
                conflicts.append(ImportConflict(index=index, code=exc.code, detail=exc.detail))
                continue
            counts[outcome] += 1
            customers.append((index, str(customer.pk)))
    return ImportResult(
        created=counts["created"],
        updated=counts["updated"],
        unchanged=counts["unchanged"],
        conflicts=conflicts,
        customers=customers,
    )


def _import_entry(entry: ImportEntry, secret: bytes) -> tuple[Outcome, Customer]:
    """Apply one entry in a savepoint; a concurrent claim of one of its identities is retried
    once (the second attempt sees the committed owner), then reported as a conflict."""
    for attempt in range(2):
        try:
            with transaction.atomic():
                return _apply_entry(entry, secret)
        except IntegrityError as exc:
            if attempt:
                raise errors.IdentityConflict(
                    "Another request claimed one of these identities meanwhile."
                ) from exc
    raise AssertionError("unreachable")


def _apply_entry(entry: ImportEntry, secret: bytes) -> tuple[Outcome, Customer]:
    match = reduce(or_, (Q(provider=p, external_id=e) for p, e in entry.identities))
    owners = set(ExternalIdentity.objects.filter(match).values_list("customer_id", flat=True))
    if len(owners) > 1:
        raise errors.IdentityConflict(
            f"These identities belong to {len(owners)} different customers; merge them first."
        )
    if not owners:
        customer = Customer.objects.create(metadata=entry.metadata)
        ExternalIdentity.objects.bulk_create(
            ExternalIdentity(customer=customer, provider=p, external_id=e)
            for p, e in entry.identities
        )
        _record_trials(customer, entry.identities, entry.trials_used, secret)
        signals.customer_created.send(sender=Customer, customer=customer)
        return "created", customer
    customer = _lock_live(Customer(pk=owners.pop()))
    held = _held(customer)
    missing = [pair for pair in entry.identities if pair not in held]
    for provider, external_id in missing:
        if _other_for_provider(held, provider, external_id) is not None:
            raise errors.IdentityConflict(
                f"The customer holding these identities has a different {provider!r} identity."
            )
    ExternalIdentity.objects.bulk_create(
        ExternalIdentity(customer=customer, provider=p, external_id=e) for p, e in missing
    )
    changed = bool(missing)
    merged = {**(customer.metadata or {}), **entry.metadata}
    if merged != customer.metadata:
        metadata_check(merged, before=customer.metadata)
        customer.metadata = merged
        customer.save(update_fields=["metadata"])
        changed = True
    if _record_trials(customer, [*held, *missing], entry.trials_used, secret):
        changed = True
    elif not entry.trials_used:
        _carry_trial(customer, missing, secret)
    return ("updated" if changed else "unchanged"), customer


def _record_trials(
    customer: Customer, identities: Sequence[Pair], trials_used: Sequence[str], secret: bytes
) -> bool:
    """Record that this person has had a trial; whether any history row was new.

    Trials are once per person per tenant, whatever the offer or plan: the history holds the
    hashes of the customer's id and identities (as `trial_grant` records them), not the key of
    the trial, so any non-empty `trials_used` records the same rows.
    """
    if not trials_used:
        return False
    pairs: list[tuple[str, str]] = [("customer", str(customer.pk)), *identities]
    hashes = {identity_hash(kind, value, secret=secret) for kind, value in pairs}
    known = set(
        TrialHistory.objects.filter(identity_hash__in=hashes).values_list(
            "identity_hash", flat=True
        )
    )
    new = sorted(hashes - known)
    # A concurrent trial may record one of them first: the row it wrote says the same.
    TrialHistory.objects.bulk_create(
        (TrialHistory(identity_hash=value) for value in new), ignore_conflicts=True
    )
    return bool(new)
