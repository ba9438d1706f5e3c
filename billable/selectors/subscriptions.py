"""Subscriptions, with the plan version and customer their presenters read."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet

from billable import errors
from billable.models import Customer, Subscription


def subscription_list(*, customer: Customer | None = None) -> QuerySet[Subscription]:
    """Every subscription (pages list the newest first), or one customer's."""
    queryset = Subscription.objects.select_related("plan", "version", "customer")
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
