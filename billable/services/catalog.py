"""Products and offers: one key namespace, normalised upper-case, enforced by the database."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.db import IntegrityError, transaction

from billable import errors, signals
from billable.catalog_keys import FEATURE_RE, normalise_key
from billable.currencies import MAX_PRICE, has_digits, is_iso, minor_digits
from billable.metadata import metadata_check
from billable.models import (
    CatalogKey,
    Currency,
    Offer,
    OfferItem,
    PlanEntitlement,
    Product,
    ProductType,
    QuotaBatch,
)
from billable.periods import period_too_long
from billing_platform.core.errors import ValidationFailed
from billing_platform.core.patches import UNSET, save_patch


def normalise_features(features: Sequence[Any]) -> list[str]:
    result: list[str] = []
    for item in features:
        if not isinstance(item, str) or not FEATURE_RE.fullmatch(item.strip()):
            raise ValidationFailed(
                "Feature names are 1–64 letters, digits, '_', '-' or '.'.",
                field="features",
                msg=f"invalid feature {item!r}",
            )
        name = item.strip().lower()
        if name not in result:
            result.append(name)
    return result


MAX_CREDIT_COST = 1_000_000_000


def normalise_credit_costs(
    costs: dict[str, Any], *, features: Sequence[str], product_type: str, key: str = ""
) -> dict[str, int]:
    """{feature: credits per unit}: features of the product (not its own key, which spends
    one for one), each named once in any case, costs 1 … 1e9, quantity products only."""
    result: dict[str, int] = {}
    if costs and product_type != ProductType.QUANTITY:
        raise ValidationFailed(
            "Only a quantity product can price features in credits.",
            field="credit_costs", msg="not a quantity product",
        )
    for name, cost in costs.items():
        feature = str(name).strip().lower()
        if feature in result or (key and feature == key.lower()):
            raise ValidationFailed(
                f"{feature!r} is named twice, or is the product's own key (spent one for one).",
                field=("credit_costs", str(name)), msg="duplicate or own key",
            )
        if feature not in features:
            raise ValidationFailed(
                f"{feature!r} is not one of the product's features.",
                field=("credit_costs", str(name)), msg="not a feature of the product",
            )
        if isinstance(cost, bool) or not isinstance(cost, int) or not 1 <= cost <= MAX_CREDIT_COST:
            raise ValidationFailed(
                f"A credit cost is a whole number from 1 to {MAX_CREDIT_COST}.",
                field=("credit_costs", str(name)), msg="out of range",
            )
        result[feature] = cost
    return result


def claim_key(key: str, kind: str) -> None:
    """Reserve a name in the shared product/offer/plan/currency namespace (409 key_taken if
    used)."""
    try:
        with transaction.atomic():
            CatalogKey.objects.create(key=key, kind=kind)
    except IntegrityError as exc:
        raise errors.KeyTaken(
            f"{key} is already a product key, an offer SKU, a plan key or a currency code."
        ) from exc


def _features_from(metadata: dict[str, Any], features: Sequence[Any] | None) -> list[str]:
    if features is not None:
        return normalise_features(features)
    raw = metadata.get("features", [])
    if not isinstance(raw, list):
        raise ValidationFailed(
            "metadata.features must be a list of names.",
            field=("metadata", "features"),
            msg="not a list",
        )
    return normalise_features(raw)


def product_create(
    *,
    key: str,
    name: str,
    product_type: str,
    description: str = "",
    is_active: bool = True,
    is_currency: bool = False,
    metadata: dict[str, Any] | None = None,
    features: Sequence[str] | None = None,
    credit_costs: dict[str, Any] | None = None,
) -> Product:
    key = normalise_key(key)
    if is_currency and is_iso(key):
        raise ValidationFailed(
            "A currency product may not use an ISO 4217 code as its key.",
            field="key",
            msg="ISO 4217 code",
        )
    metadata = dict(metadata or {})
    feature_list = _features_from(metadata, features)
    metadata["features"] = feature_list
    metadata_check(metadata)
    costs = normalise_credit_costs(
        credit_costs or {}, features=feature_list, product_type=product_type, key=key
    )
    with transaction.atomic():
        claim_key(key, "product")
        return Product.objects.create(
            key=key,
            name=name,
            description=description,
            product_type=product_type,
            is_active=is_active,
            is_currency=is_currency,
            metadata=metadata,
            features=feature_list,
            credit_costs=costs,
        )


def product_update(
    *,
    product: Product,
    name: str = UNSET,
    description: str = UNSET,
    product_type: str = UNSET,
    is_active: bool = UNSET,
    is_currency: bool = UNSET,
    metadata: dict[str, Any] = UNSET,
    features: Sequence[str] = UNSET,
    credit_costs: dict[str, Any] = UNSET,
) -> Product:
    """Change a product; type and currency flag are fixed once batches or plan entitlements
    exist (409). A new credit cost applies to the spends that follow."""
    with transaction.atomic():
        product = Product.objects.select_for_update().get(pk=product.pk)
        was_active = product.is_active
        fixed_change = (product_type is not UNSET and product_type != product.product_type) or (
            is_currency is not UNSET and is_currency != product.is_currency
        )
        if fixed_change and (
            QuotaBatch.objects.filter(product=product).exists()
            or PlanEntitlement.objects.filter(product=product).exists()
        ):
            raise errors.ProductInUse()
        if is_currency is not UNSET and is_currency and is_iso(product.key):
            raise ValidationFailed(
                "A currency product may not use an ISO 4217 code as its key.",
                field="is_currency",
                msg="ISO 4217 key",
            )
        changes: dict[str, Any] = {
            "name": name,
            "description": description,
            "product_type": product_type,
            "is_active": is_active,
            "is_currency": is_currency,
        }
        if metadata is not UNSET or features is not UNSET:
            new_metadata = dict(metadata if metadata is not UNSET else product.metadata)
            if features is not UNSET:
                feature_list = normalise_features(features)
            elif metadata is not UNSET and "features" in metadata:
                feature_list = _features_from(new_metadata, None)
            else:
                feature_list = list(product.features)
            new_metadata["features"] = feature_list
            metadata_check(new_metadata, before=product.metadata)
            changes["metadata"] = new_metadata
            changes["features"] = feature_list
        kept_features = changes.get("features", list(product.features))
        kept_type = product_type if product_type is not UNSET else product.product_type
        if credit_costs is not UNSET:
            changes["credit_costs"] = normalise_credit_costs(
                credit_costs, features=kept_features, product_type=kept_type, key=product.key
            )
        elif kept_type != ProductType.QUANTITY:
            # A product that stops being a quantity product prices nothing any more.
            changes["credit_costs"] = {}
        elif changes.get("features") is not None:
            # Costs of features the change removes go with them.
            changes["credit_costs"] = {
                name: cost for name, cost in (product.credit_costs or {}).items()
                if name in kept_features
            }
        save_patch(product, changes)
        if was_active and not product.is_active:
            signals.product_deactivated.send(sender=Product, product=product)
    return product


@dataclass(frozen=True)
class ItemSpec:
    product: str
    quantity: int
    period_unit: str = "forever"
    period_value: int | None = None


def check_currency(currency: str, price: Decimal) -> str:
    """The price's currency code, checked with the price: an ISO 4217 code, a declared currency
    or a currency product, and a price with no more places than its minor digits.

    A declared currency's row stays locked until the caller's transaction ends, so its digits
    cannot change (`currency_update`) while the offer or plan version priced in it is written.
    """
    if not price.is_finite() or not 0 <= price <= MAX_PRICE:
        raise ValidationFailed(
            f"price is a non-negative amount of at most {MAX_PRICE}.", field="price",
            msg="out of range",
        )
    code = currency.strip().upper()
    if is_iso(code):
        digits = minor_digits(code)
    else:
        declared = Currency.objects.select_for_update(no_key=True).filter(code=code).first()
        if declared is not None:
            digits = declared.minor_digits
        elif Product.objects.filter(key=code, is_currency=True).exists():
            if not has_digits(price, 0):
                raise ValidationFailed(
                    "Prices in an internal currency are whole numbers.",
                    field="price",
                    msg="not a whole number",
                )
            return code
        else:
            raise errors.InvalidCurrency(
                f"{code} is neither an ISO 4217 code, a declared currency nor the key of a "
                "currency product."
            )
    if not has_digits(price, digits):
        raise ValidationFailed(
            f"{code} prices have at most {digits} decimal places.",
            field="price",
            msg="too many decimal places",
        )
    return code


def _resolve_items(items: Sequence[ItemSpec]) -> list[tuple[Product, ItemSpec]]:
    if not items:
        raise ValidationFailed("An offer has at least one item.", field="items", msg="empty")
    keys = [normalise_key(item.product, field="product") for item in items]
    products = {p.key: p for p in Product.objects.filter(key__in=keys)}
    resolved = []
    for key, item in zip(keys, items, strict=True):
        product = products.get(key)
        if product is None:
            raise errors.UnknownProduct(f"No product has the key {key}.")
        if not product.is_active:
            raise errors.InactiveProduct(f"{key} is not active.")
        resolved.append((product, item))
    for index, (product, item) in enumerate(resolved):
        _check_period(index, product, item)
    return resolved


def _check_period(index: int, product: Product, item: ItemSpec) -> None:
    """Refuse a period over 100 years; a period product's item extends access by quantity ×
    period, so that product is bounded too."""
    if period_too_long(item.period_unit, item.period_value):
        raise ValidationFailed(
            "A period is at most 100 years.", field=("items", index, "period_value"),
            msg="more than 100 years",
        )
    if product.product_type == ProductType.PERIOD and period_too_long(
        item.period_unit, item.period_value, item.quantity
    ):
        raise ValidationFailed(
            "A period product's item grants at most 100 years of access (quantity × period).",
            field=("items", index, "quantity"),
            msg="more than 100 years",
        )


def _write_items(offer: Offer, resolved: list[tuple[Product, ItemSpec]]) -> None:
    OfferItem.objects.bulk_create(
        OfferItem(
            offer=offer,
            product=product,
            quantity=item.quantity,
            period_unit=item.period_unit,
            period_value=item.period_value or None,
            position=position,
        )
        for position, (product, item) in enumerate(resolved)
    )


def offer_create(
    *,
    sku: str,
    name: str,
    price: Decimal,
    currency: str,
    items: Sequence[ItemSpec],
    description: str = "",
    is_active: bool = True,
    metadata: dict[str, Any] | None = None,
) -> Offer:
    sku = normalise_key(sku, field="sku")
    with transaction.atomic():
        currency = check_currency(currency, price)
        resolved = _resolve_items(items)
        claim_key(sku, "offer")
        offer = Offer.objects.create(
            sku=sku,
            name=name,
            description=description,
            price=price,
            currency=currency,
            is_active=is_active,
            metadata=metadata or {},
        )
        _write_items(offer, resolved)
    return offer


def offer_update(
    *,
    offer: Offer,
    name: str = UNSET,
    description: str = UNSET,
    price: Decimal = UNSET,
    currency: str = UNSET,
    is_active: bool = UNSET,
    metadata: dict[str, Any] = UNSET,
    items: Sequence[ItemSpec] = UNSET,
) -> Offer:
    """Change an offer; new items replace the old (orders keep their own snapshot)."""
    with transaction.atomic():
        offer = Offer.objects.select_for_update().get(pk=offer.pk)
        changes: dict[str, Any] = {
            "name": name,
            "description": description,
            "is_active": is_active,
            "metadata": metadata,
        }
        if price is not UNSET or currency is not UNSET:
            new_price = price if price is not UNSET else offer.price
            new_currency = currency if currency is not UNSET else offer.currency
            changes["currency"] = check_currency(new_currency, new_price)
            changes["price"] = new_price
        if items is not UNSET:
            resolved = _resolve_items(items)
            offer.items.all().delete()
            _write_items(offer, resolved)
        save_patch(offer, changes)
    return offer


def demo_catalog_install() -> None:
    """Install the demo products and offers in the schema in use (idempotent: existing keys
    are left alone)."""
    products = [
        ("REPORTS", "Reports", ProductType.QUANTITY, False, ["report_generation"]),
        (
            "PRO_ACCESS",
            "Pro access",
            ProductType.PERIOD,
            False,
            ["priority_support", "report_generation", "export"],
        ),
        ("COINS", "Coins", ProductType.QUANTITY, True, []),
    ]
    with transaction.atomic():
        for key, name, product_type, is_currency, features in products:
            if not Product.objects.filter(key=key).exists():
                product_create(
                    key=key,
                    name=name,
                    product_type=product_type,
                    is_currency=is_currency,
                    features=features,
                )
        offers = [
            (
                "REPORTS_10",
                "10 reports",
                Decimal("9.00"),
                "USD",
                [ItemSpec("REPORTS", 10, "days", 30)],
                {},
            ),
            (
                "PRO_MONTH",
                "Pro, one month",
                Decimal("19.00"),
                "USD",
                [ItemSpec("PRO_ACCESS", 1, "months", 1)],
                {},
            ),
            (
                "PRO_TRIAL",
                "Pro trial, 7 days",
                Decimal("0.00"),
                "USD",
                [ItemSpec("PRO_ACCESS", 1, "days", 7)],
                {"is_trial": True},
            ),
            (
                "COINS_100",
                "100 coins",
                Decimal("5.00"),
                "USD",
                [ItemSpec("COINS", 100, "forever", None)],
                {},
            ),
            (
                "REPORTS_5_FOR_COINS",
                "5 reports for 30 coins",
                Decimal("30"),
                "COINS",
                [ItemSpec("REPORTS", 5, "days", 30)],
                {},
            ),
        ]
        for sku, name, price, currency, items, metadata in offers:
            if not Offer.objects.filter(sku=sku).exists():
                offer_create(
                    sku=sku,
                    name=name,
                    price=price,
                    currency=currency,
                    items=items,
                    metadata=metadata,
                )
