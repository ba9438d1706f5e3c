"""Reads of the billing engine: querysets with what they need prefetched."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from django.db.models import Exists, OuterRef, Q, QuerySet, Value
from django.db.models.functions import Coalesce

from billable import clock, errors
from billable.catalog_keys import KEY_RE, normalise_key
from billable.models import (
    Customer,
    ExternalIdentity,
    Hold,
    LedgerEntry,
    Offer,
    OfferItem,
    Order,
    Product,
    QuotaBatch,
)

# Batches without expiry sort after every dated one.
FAR_FUTURE_AWARE = datetime(9999, 12, 31, tzinfo=UTC)


def catalog_key_like(value: str) -> bool:
    """Whether a string could be a product key or SKU (anything else is simply unknown)."""
    return bool(KEY_RE.match(value.strip()))


def _uuid(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(value))
    except ValueError:
        return None


def product_list() -> QuerySet[Product]:
    return Product.objects.all()


def product_get(*, key: str) -> Product:
    try:
        normalised = normalise_key(key)
    except Exception as exc:
        raise errors.ProductNotFound() from exc
    product = Product.objects.filter(key=normalised).first()
    if product is None:
        raise errors.ProductNotFound()
    return product


def offer_list() -> QuerySet[Offer]:
    return Offer.objects.prefetch_related("items__product")


def offer_get(*, sku: str) -> Offer:
    try:
        normalised = normalise_key(sku)
    except Exception as exc:
        raise errors.OfferNotFound() from exc
    offer = offer_list().filter(sku=normalised).first()
    if offer is None:
        raise errors.OfferNotFound()
    return offer


def catalog() -> QuerySet[Offer]:
    """Active offers whose products are all active."""
    inactive_item = OfferItem.objects.filter(offer=OuterRef("pk"), product__is_active=False)
    return offer_list().filter(is_active=True).exclude(Exists(inactive_item))


def catalog_by_skus(skus: list[str]) -> list[Offer]:
    """The requested offers in request order, skipping unknown and inactive ones."""
    wanted = []
    for sku in skus:
        if catalog_key_like(sku):
            wanted.append(sku.strip().upper())
    found = {offer.sku: offer for offer in catalog().filter(sku__in=wanted)}
    seen: set[str] = set()
    result = []
    for sku in wanted:
        if sku in found and sku not in seen:
            result.append(found[sku])
            seen.add(sku)
    return result


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
    key = _uuid(customer_id)
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


def usable_batches(*, customer: Customer) -> QuerySet[QuotaBatch]:
    """Usable batches in consumption order (soonest expiry first, never-expiring last)."""
    now = clock.now()
    return (
        QuotaBatch.objects.filter(customer=customer, state="active", valid_from__lte=now)
        .filter(Q(expires_at__isnull=True) | Q(expires_at__gt=now))
        .select_related("product")
        .annotate(sort_expires=Coalesce("expires_at", Value(FAR_FUTURE_AWARE)))
    )


def ledger_entries(
    *,
    customer: Customer,
    product: str | None = None,
    action_type: str | None = None,
    since: datetime | None = None,
) -> QuerySet[LedgerEntry]:
    queryset = LedgerEntry.objects.filter(batch__customer=customer).select_related("batch__product")
    if product:
        queryset = queryset.filter(batch__product__key=product.upper())
    if action_type:
        queryset = queryset.filter(action_type=action_type)
    if since is not None:
        queryset = queryset.filter(created_at__gte=since)
    return queryset


def hold_get(*, hold_id: str) -> Hold:
    key = _uuid(hold_id)
    hold = Hold.objects.filter(pk=key).first() if key else None
    if hold is None:
        raise errors.HoldNotFound()
    return hold


def batch_get(*, batch_id: str) -> QuotaBatch:
    key = _uuid(batch_id)
    batch = QuotaBatch.objects.select_related("product").filter(pk=key).first() if key else None
    if batch is None:
        raise errors.BatchNotFound()
    return batch


def wallet(*, customer: Customer) -> dict[str, Any]:
    """Units per product key over usable batches; null for period or unlimited access."""
    balances: dict[str, int | None] = {}
    for batch in usable_batches(customer=customer):
        key = batch.product.key
        if batch.product.product_type != "quantity":
            balances[key] = None
        elif key not in balances or balances[key] is not None:
            balances[key] = (balances.get(key) or 0) + batch.remaining
    return {"customer_id": str(customer.pk), "balances": balances}


def order_list(*, customer: Customer | None = None, status: str | None = None) -> QuerySet[Order]:
    queryset = Order.objects.prefetch_related("items")
    if customer is not None:
        queryset = queryset.filter(customer=customer)
    if status:
        queryset = queryset.filter(status=status)
    return queryset


def order_get(*, order_id: str) -> Order:
    key = _uuid(order_id)
    order = Order.objects.prefetch_related("items").filter(pk=key).first() if key else None
    if order is None:
        raise errors.OrderNotFound()
    return order
