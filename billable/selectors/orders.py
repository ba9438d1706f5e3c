"""Reads of orders."""

from __future__ import annotations

from django.db.models import QuerySet

from billable import errors
from billable.models import Customer, Order
from billable.selectors.ids import uuid_or_none


def order_list(*, customer: Customer | None = None, status: str | None = None) -> QuerySet[Order]:
    queryset = Order.objects.prefetch_related("items")
    if customer is not None:
        queryset = queryset.filter(customer=customer)
    if status:
        queryset = queryset.filter(status=status)
    return queryset


def order_get(*, order_id: str) -> Order:
    key = uuid_or_none(order_id)
    order = Order.objects.prefetch_related("items").filter(pk=key).first() if key else None
    if order is None:
        raise errors.OrderNotFound()
    return order
