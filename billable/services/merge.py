"""Merging two customers who turn out to be one person."""

from __future__ import annotations

from typing import Any

from billable import errors, signals
from billable.metadata import metadata_check
from billable.models import (
    LIVE_SUBSCRIPTION_STATUSES,
    Adjustment,
    Customer,
    ExternalIdentity,
    Grant,
    Hold,
    Order,
    QuotaBatch,
    Referral,
    Subscription,
    Usage,
)
from billable.results import MergeResult
from billable.selectors import referrer_chain, referrer_chain_contains
from billable.services.referrals import referral_graph_lock
from billing_platform.core.db import service_atomic


def customer_merge(*, target: Customer, source: Customer) -> MergeResult:
    """Move everything of `source` to `target` in one transaction; source keeps `merged_into`.

    Raises SameCustomer (422), CustomerErased (422: either was erased), IdentityConflict (409:
    both hold different external ids for one provider) and MetadataTooLarge (422: their
    metadata together passes 16 KiB). Ledger entries belong to batches, so they follow without
    being touched.
    """
    if target.pk == source.pk:
        raise errors.SameCustomer()
    with service_atomic():
        referral_graph_lock()  # before the row locks, as an attach takes it
        locked = {
            c.pk: c
            for c in Customer.objects.select_for_update()
            .filter(pk__in=[target.pk, source.pk])
            .order_by("pk")
        }
        target, source = locked[target.pk], locked[source.pk]
        if source.merged_into_id is not None or target.merged_into_id is not None:
            raise errors.SameCustomer("One of these customers was already merged.")
        # An erased person's rows stay anonymous: none are moved to, or given to, anyone.
        if source.erased_at is not None or target.erased_at is not None:
            raise errors.CustomerErased()
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
        shared_plans = _held_plans(target) & _held_plans(source)
        if shared_plans:
            raise errors.SubscriptionExists(
                "Both customers have a live subscription to the same plan; cancel one first."
            )
        metadata = {**source.metadata, **target.metadata}
        metadata_check(metadata, before=target.metadata)
        moved_identities = ExternalIdentity.objects.filter(customer=source).update(customer=target)
        moved_batches = QuotaBatch.objects.filter(customer=source).update(customer=target)
        moved_orders = Order.objects.filter(customer=source).update(customer=target)
        moved_holds = Hold.objects.filter(customer=source).update(customer=target)
        moved_usages = Usage.objects.filter(customer=source).update(customer=target)
        Grant.objects.filter(customer=source).update(customer=target)
        Adjustment.objects.filter(customer=source).update(customer=target)
        Subscription.objects.filter(customer=source).update(customer=target)
        moved_referrals = _move_referrals(target=target, source=source)
        source.merged_into = target
        target.metadata = metadata
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
    """Re-point the source's referrals to the target, except those the rules would refuse.

    A referral between the two would be a self-referral, a second referrer of the target is
    `already_referred`, and a link closing a cycle through the target is `referral_cycle`: each
    goes, and the target keeps its own links.
    """
    Referral.objects.filter(referrer=source, referee=target).delete()
    Referral.objects.filter(referrer=target, referee=source).delete()
    # Source → c closes a cycle when c is among the target's referrers; only the one just below
    # the source on the target's chain can be (the chain is a path).
    chain = referrer_chain(target)
    if source.pk in chain[1:]:
        below = chain[chain.index(source.pk) - 1]
        Referral.objects.filter(referrer=source, referee_id=below).delete()
    moved = Referral.objects.filter(referrer=source).update(referrer=target)
    incoming = Referral.objects.select_related("referrer").filter(referee=source).first()
    if incoming is not None:
        if Referral.objects.filter(referee=target).exists() or referrer_chain_contains(
            incoming.referrer, target
        ):
            incoming.delete()
        else:
            moved += Referral.objects.filter(pk=incoming.pk).update(referee=target)
    return moved


def _held_plans(customer: Customer) -> set[Any]:
    """The plans a customer's live subscriptions are on or are changing to."""
    held: set[Any] = set()
    for plan_id, scheduled_plan_id in Subscription.objects.filter(
        customer=customer, status__in=LIVE_SUBSCRIPTION_STATUSES
    ).values_list("plan_id", "scheduled_version__plan_id"):
        held.add(plan_id)
        if scheduled_plan_id is not None:
            held.add(scheduled_plan_id)
    return held
