"""Reads of the catalog and orders pages and of a customer's corrections, in the current
tenant's schema, through the engine's own selectors where it has them.

Lists are paged by keyset, newest first: the catalog by its primary key order (a tenant's
catalog is small), the orders by `order_recent_idx`, `order_status_recent_idx` or, for one
customer, `order_customer_idx`.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.db.models import QuerySet

from billable import selectors as billing
from billable.models import (
    Customer,
    ExternalIdentity,
    Offer,
    Order,
    Plan,
    PlanVersion,
    Product,
    ProductType,
    QuotaBatch,
)
from billable.selectors.ids import uuid_or_none
from billing_platform.core.errors import NotFound
from billing_platform.core.pagination import Page, paginate

CATALOG_PAGE = 25
ORDERS_PAGE = 25
# Offers and plans listed on a product's page.
USES_SHOWN = 50


# --- The catalog


def products_page(*, cursor: str | None = None) -> Page[Product]:
    """Every product, newest first. Raises ValidationFailed (422) for a foreign cursor."""
    return paginate(billing.product_list(), limit=CATALOG_PAGE, cursor=cursor, order=("-pk",))


def offers_page(*, cursor: str | None = None) -> Page[Offer]:
    """Every offer with its items, newest first. Raises ValidationFailed (422) for a foreign
    cursor."""
    return paginate(billing.offer_list(), limit=CATALOG_PAGE, cursor=cursor, order=("-pk",))


def plans_page(*, cursor: str | None = None) -> Page[Plan]:
    """Every plan with its versions, newest first. Raises ValidationFailed (422) for a foreign
    cursor."""
    return paginate(billing.plan_list(), limit=CATALOG_PAGE, cursor=cursor, order=("-pk",))


def product_get(*, key: str) -> Product:
    """The product with this key, in any case (404 `product_not_found` otherwise)."""
    return billing.product_get(key=key)


def offer_get(*, sku: str) -> Offer:
    """The offer with this SKU, with its items (404 `offer_not_found` otherwise)."""
    return billing.offer_get(sku=sku)


@dataclass(frozen=True)
class PlanPage:
    plan: Plan
    current: PlanVersion
    versions: list[PlanVersion]  # newest first


def plan_page(*, key: str) -> PlanPage:
    """A plan with its current terms and every version (404 `plan_not_found` otherwise)."""
    plan = billing.plan_get(key=key)
    versions = sorted(plan.versions.all(), key=lambda v: v.version, reverse=True)
    return PlanPage(plan=plan, current=billing.plan_version(plan), versions=versions)


def offers_with_product(product: Product) -> list[Offer]:
    return list(
        Offer.objects.filter(items__product=product).distinct().order_by("sku")[:USES_SHOWN]
    )


def plans_with_product(product: Product) -> list[Plan]:
    return list(
        Plan.objects.filter(versions__entitlements__product=product)
        .distinct()
        .order_by("key")[:USES_SHOWN]
    )


def item_products() -> list[Product]:
    """Products an offer's items may name, by key (inactive ones too, marked, so an offer that
    holds one still shows it; the engine refuses them when the items are saved)."""
    return list(Product.objects.order_by("-is_active", "key"))


def quantity_products() -> list[Product]:
    """Products an adjustment may credit or debit."""
    return list(Product.objects.filter(product_type=ProductType.QUANTITY).order_by("key"))


# --- Orders


@dataclass(frozen=True)
class OrderQuery:
    """The filters of the orders list; `customer` is a customer id or an exact external id."""

    status: str = ""
    customer: str = ""
    created_from: datetime | None = None
    created_before: datetime | None = None


def customers_named(text: str) -> list[Customer] | None:
    """The customers a filter names: the one with this id, or those holding this external id
    (of any provider). None when the filter is empty; an empty list when nobody matches."""
    text = text.strip()
    if not text:
        return None
    if uuid_or_none(text) is not None:
        found = billing.customer_by_id(text)
        return [found] if found is not None else []
    owners = ExternalIdentity.objects.filter(external_id=text).values("customer_id")
    return list(Customer.objects.filter(pk__in=owners))


def orders_matching(query: OrderQuery) -> QuerySet[Order]:
    orders = Order.objects.prefetch_related("items")
    customers = customers_named(query.customer)
    if customers is not None:
        orders = orders.filter(customer__in=customers)
    if query.status:
        orders = orders.filter(status=query.status)
    if query.created_from is not None:
        orders = orders.filter(created_at__gte=query.created_from)
    if query.created_before is not None:
        orders = orders.filter(created_at__lt=query.created_before)
    return orders


def orders_page(*, query: OrderQuery, cursor: str | None = None) -> Page[Order]:
    """The orders the filters match, newest first, a page at a time.

    Raises ValidationFailed (422) for a cursor this page did not issue.
    """
    return paginate(
        orders_matching(query),
        limit=ORDERS_PAGE,
        cursor=cursor,
        order=("-created_at", "-pk"),
    )


def order_get(*, order_id: str) -> Order:
    """The order with this id, with its items and customer (404 `order_not_found` otherwise,
    another tenant's id alike)."""
    return billing.order_get(order_id=order_id)


@dataclass(frozen=True)
class OrderLine:
    sku: str
    name: str
    quantity: int
    unit_price: Decimal
    total: Decimal


def order_lines(order: Order) -> list[OrderLine]:
    return [
        OrderLine(
            sku=item.sku,
            name=item.name,
            quantity=item.quantity,
            unit_price=item.unit_price,
            total=item.unit_price * item.quantity,
        )
        for item in order.items.all()
    ]


def order_totals(orders: list[Order]) -> list[tuple[str, Decimal]]:
    """The orders' totals per currency, by currency (an order's lines share its currency)."""
    totals: dict[str, Decimal] = defaultdict(Decimal)
    for order in orders:
        totals[order.currency] += order.total
    return sorted(totals.items())


def order_customer(order: Order) -> Customer:
    return Customer.objects.prefetch_related("identities").get(pk=order.customer_id)


# --- A customer's corrections


def customer_batch(*, customer: Customer, batch_id: str) -> QuotaBatch:
    """One of the customer's batches (404 for any other id: another customer's, another
    tenant's, or none)."""
    key = uuid_or_none(batch_id)
    batch = (
        QuotaBatch.objects.select_related("product").filter(pk=key, customer=customer).first()
        if key
        else None
    )
    if batch is None:
        raise NotFound("No such batch for this customer.")
    return batch


# --- Merging and erasing a customer


def merged_into_count(customer: Customer) -> int:
    """How many customers were merged into this one (an erase covers them too)."""
    return Customer.objects.filter(merged_into=customer).count()
