"""Reads of the catalog: products, offers, and the offers that can be sold or granted."""

from __future__ import annotations

from django.db.models import Exists, OuterRef, QuerySet

from billable import errors
from billable.catalog_keys import KEY_RE, normalise_key
from billable.models import Offer, OfferItem, Product


def catalog_key_like(value: str) -> bool:
    """Whether a string could be a product key or SKU (anything else is simply unknown)."""
    return bool(KEY_RE.fullmatch(value.strip()))


def product_list(*, is_active: bool | None = None) -> QuerySet[Product]:
    """Every product, or the active (or inactive) ones only."""
    found = Product.objects.all()
    return found if is_active is None else found.filter(is_active=is_active)


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


def offer_for_grant(sku: str) -> Offer:
    """An active offer whose products are all active (422 unknown/inactive otherwise)."""
    key = normalise_key(sku, field="sku")
    offer = Offer.objects.filter(sku=key).prefetch_related("items__product").first()
    if offer is None:
        raise errors.UnknownSku(f"No offer has the SKU {key}.")
    if not offer.is_active:
        raise errors.InactiveOffer(f"{key} is not active.")
    for item in offer.items.all():
        if not item.product.is_active:
            raise errors.InactiveProduct(f"{key} contains the inactive product {item.product.key}.")
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
