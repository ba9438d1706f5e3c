"""Subscriptions, with the plan version and customer their presenters read."""

from __future__ import annotations

from typing import Any

from django.db.models import OuterRef, QuerySet, Subquery

from billable import errors
from billable.models import Customer, Order, OrderStatus, Subscription


def subscription_list(*, customer: Customer | None = None) -> QuerySet[Subscription]:
    """Every subscription (pages list the newest first), or one customer's, each with
    `renewal_order_pk`: its pending renewal order, if any."""
    pending = Order.objects.filter(
        subscription=OuterRef("pk"), status=OrderStatus.PENDING
    ).order_by("period_number").values("pk")[:1]
    queryset = Subscription.objects.select_related(
        "plan", "version", "customer", "scheduled_version__plan"
    ).annotate(
        renewal_order_pk=Subquery(pending)
    )
    if customer is not None:
        queryset = queryset.filter(customer=customer)
    return queryset


def subscription_get(*, subscription_id: Any) -> Subscription:
    """The subscription with this id; 404 `subscription_not_found` (a malformed id too)."""
    try:
        found = subscription_list().filter(pk=subscription_id).first()
    except Exception as exc:  # not a UUID
        raise errors.SubscriptionNotFound() from exc
    if found is None:
        raise errors.SubscriptionNotFound()
    return found
