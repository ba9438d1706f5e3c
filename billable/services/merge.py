"""Merging two customers who turn out to be one person."""

from __future__ import annotations

from dataclasses import dataclass

from billable import errors, signals
from billable.models import (
    Adjustment,
    Customer,
    ExternalIdentity,
    Grant,
    Hold,
    Order,
    QuotaBatch,
    Referral,
    Usage,
)
from billing_platform.core.db import service_atomic


@dataclass(frozen=True)
class MergeResult:
    target: Customer
    moved_identities: int
    moved_batches: int
    moved_orders: int
    moved_holds: int
    moved_usages: int
    moved_referrals: int


def customer_merge(*, target: Customer, source: Customer) -> MergeResult:
    """Move everything of `source` to `target` in one transaction; source keeps `merged_into`.

    Raises SameCustomer (422) and IdentityConflict (409: both hold different external ids for
    one provider). Ledger entries belong to batches, so they follow without being touched.
    """
    if target.pk == source.pk:
        raise errors.SameCustomer()
    with service_atomic():
        locked = {
            c.pk: c
            for c in Customer.objects.select_for_update()
            .filter(pk__in=[target.pk, source.pk])
            .order_by("pk")
        }
        target, source = locked[target.pk], locked[source.pk]
        if source.merged_into_id is not None or target.merged_into_id is not None:
            raise errors.SameCustomer("One of these customers was already merged.")
        target_ids = dict(
            ExternalIdentity.objects.filter(customer=target).values_list("provider", "external_id")
        )
        for provider, external_id in ExternalIdentity.objects.filter(customer=source).values_list(
            "provider", "external_id"
        ):
            if provider in target_ids and target_ids[provider] != external_id:
                raise errors.IdentityConflict(
                    f"Both customers have a different {provider!r} identity."
                )
        moved_identities = ExternalIdentity.objects.filter(customer=source).update(customer=target)
        moved_batches = QuotaBatch.objects.filter(customer=source).update(customer=target)
        moved_orders = Order.objects.filter(customer=source).update(customer=target)
        moved_holds = Hold.objects.filter(customer=source).update(customer=target)
        moved_usages = Usage.objects.filter(customer=source).update(customer=target)
        Grant.objects.filter(customer=source).update(customer=target)
        Adjustment.objects.filter(customer=source).update(customer=target)
        moved_referrals = _move_referrals(target=target, source=source)
        source.merged_into = target
        target.metadata = {**source.metadata, **target.metadata}
        source.save(update_fields=["merged_into"])
        target.save(update_fields=["metadata"])
        result = MergeResult(
            target=target,
            moved_identities=moved_identities,
            moved_batches=moved_batches,
            moved_orders=moved_orders,
            moved_holds=moved_holds,
            moved_usages=moved_usages,
            moved_referrals=moved_referrals,
        )
        signals.customer_merged.send(sender=Customer, target=target, source=source, result=result)
    return result


def _move_referrals(*, target: Customer, source: Customer) -> int:
    moved = 0
    # A referral between the two becomes a self-referral: it goes.
    Referral.objects.filter(referrer=source, referee=target).delete()
    Referral.objects.filter(referrer=target, referee=source).delete()
    moved += Referral.objects.filter(referrer=source).update(referrer=target)
    incoming = Referral.objects.filter(referee=source).first()
    if incoming is not None:
        if Referral.objects.filter(referee=target).exists():
            incoming.delete()  # the target keeps its own referrer
        else:
            moved += Referral.objects.filter(pk=incoming.pk).update(referee=target)
    return moved
