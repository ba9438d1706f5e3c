"""`/billing/products`, `/billing/offers`, `/billing/catalog`: what a tenant sells."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from ninja import Query, Status

from billable import presenters, selectors
from billable.api.inputs import decimal_amount, patch_changes
from billable.api.routers import ADMIN, READ, router
from billable.schemas import (
    OfferIn,
    OfferOut,
    OfferPage,
    OfferPatch,
    ProductIn,
    ProductOut,
    ProductPage,
    ProductPatch,
)
from billable.services import catalog as catalog_services
from billable.services.catalog import ItemSpec
from billing_platform.core.pagination import Page, PageParams, page_data, paginate
from billing_platform.core.problems import error_responses


def _items(items: list[Any]) -> list[ItemSpec]:
    return [
        ItemSpec(
            product=item.product,
            quantity=item.quantity,
            period_unit=item.period_unit,
            period_value=item.period_value,
        )
        for item in items
    ]


# A credit pool for an AI bot: each model's call costs credits.
_PRODUCT_EXAMPLE: dict[str, Any] = {
    "requestBody": {"content": {"application/json": {"example": {
        "key": "ai_credits", "name": "AI credits", "product_type": "quantity",
        "features": ["small_model", "large_model", "image"],
        "credit_costs": {"small_model": 1, "large_model": 10, "image": 25},
    }}}},
}

@router.get(
    "/products",
    auth=READ,
    response={200: ProductPage, **error_responses()},
    operation_id="billing_product_list",
    summary="List products",
)
def product_list(
    request: HttpRequest, page: Query[PageParams], is_active: bool | None = None
) -> dict[str, Any]:
    """The tenant's products, newest first; `is_active` filters. A product is what a customer holds
    units or access of; its `features` are the names a consume or balance may use instead of its
    key."""
    result = paginate(
        selectors.product_list(is_active=is_active), limit=page.limit, cursor=page.cursor
    )
    return page_data(result, presenters.product_data)


@router.post(
    "/products",
    auth=ADMIN,
    response={201: ProductOut, **error_responses(409)},
    operation_id="billing_product_create",
    summary="Create a product",
    openapi_extra=_PRODUCT_EXAMPLE,
)
def product_create(request: HttpRequest, payload: ProductIn) -> Status:
    """Create a product: `quantity` (units that are consumed), `period` (access for a time) or
    `unlimited`. Keys are matched case-insensitively and shown upper-case; 409 `key_taken` when a
    product, offer, plan or currency has the key."""
    product = catalog_services.product_create(
        key=payload.key,
        name=payload.name,
        product_type=payload.product_type,
        description=payload.description,
        is_active=payload.is_active,
        is_currency=payload.is_currency,
        metadata=payload.metadata,
        features=payload.features,
        credit_costs=payload.credit_costs,
    )
    return Status(201, presenters.product_data(product))


@router.get(
    "/products/{key}",
    auth=READ,
    response={200: ProductOut, **error_responses(404)},
    operation_id="billing_product_get",
    summary="Get a product",
)
def product_get(request: HttpRequest, key: str) -> dict[str, Any]:
    """One product by key (any case); 404 `product_not_found`."""
    return presenters.product_data(selectors.product_get(key=key))


@router.patch(
    "/products/{key}",
    auth=ADMIN,
    response={200: ProductOut, **error_responses(404, 409)},
    operation_id="billing_product_update",
    summary="Change a product (deactivating sends product_deactivated)",
)
def product_update(request: HttpRequest, key: str, payload: ProductPatch) -> dict[str, Any]:
    """Change the fields given; the others stay. Deactivating sends `product.deactivated`. Changing
    `product_type` or `is_currency` once batches exist is 409 `product_in_use`."""
    product = selectors.product_get(key=key)
    changes = patch_changes(payload)
    return presenters.product_data(catalog_services.product_update(product=product, **changes))


@router.get(
    "/offers",
    auth=READ,
    response={200: OfferPage, **error_responses()},
    operation_id="billing_offer_list",
    summary="List offers (active and inactive)",
)
def offer_list(request: HttpRequest, page: Query[PageParams]) -> dict[str, Any]:
    """Every offer, active and inactive, newest first, with its items (product, quantity, period).
    Paginated with `limit` and `cursor`."""
    result = paginate(selectors.offer_list(), limit=page.limit, cursor=page.cursor)
    return page_data(result, presenters.offer_data)


@router.post(
    "/offers",
    auth=ADMIN,
    response={201: OfferOut, **error_responses(409)},
    operation_id="billing_offer_create",
    summary="Create an offer",
)
def offer_create(request: HttpRequest, payload: OfferIn) -> Status:
    """Create an offer: what a customer gets (`items`: products, quantities and periods) for a
    `price` in a `currency` (ISO 4217, a declared currency, or a currency product). Orders and
    grants take offers by `sku`. 409 `key_taken`; 422 `unknown_product`, `inactive_product`."""
    offer = catalog_services.offer_create(
        sku=payload.sku,
        name=payload.name,
        price=decimal_amount(payload.price, "price"),
        currency=payload.currency,
        items=_items(payload.items),
        description=payload.description,
        is_active=payload.is_active,
        metadata=payload.metadata,
    )
    return Status(201, presenters.offer_data(selectors.offer_get(sku=offer.sku)))


@router.get(
    "/offers/{sku}",
    auth=READ,
    response={200: OfferOut, **error_responses(404)},
    operation_id="billing_offer_get",
    summary="Get an offer",
)
def offer_get(request: HttpRequest, sku: str) -> dict[str, Any]:
    """One offer by SKU (any case), active or not, with its items; 404 `offer_not_found`."""
    return presenters.offer_data(selectors.offer_get(sku=sku))


@router.patch(
    "/offers/{sku}",
    auth=ADMIN,
    response={200: OfferOut, **error_responses(404, 409)},
    operation_id="billing_offer_update",
    summary="Change an offer (new items replace the old)",
)
def offer_update(request: HttpRequest, sku: str, payload: OfferPatch) -> dict[str, Any]:
    """Change the fields given; new `items` replace the old ones. Orders already made keep the
    snapshot of items and prices taken when they were created."""
    offer = selectors.offer_get(sku=sku)
    changes = patch_changes(payload)
    if "price" in changes:
        changes["price"] = decimal_amount(changes["price"], "price")
    if "items" in changes:
        changes["items"] = _items(payload.items or [])
    catalog_services.offer_update(offer=offer, **changes)
    return presenters.offer_data(selectors.offer_get(sku=offer.sku))


@router.get(
    "/catalog",
    auth=READ,
    response={200: OfferPage, **error_responses()},
    operation_id="billing_catalog",
    summary="Active offers; ?sku=A&sku=B returns those in request order",
)
def catalog(
    request: HttpRequest,
    page: Query[PageParams],
    sku: list[str] | None = Query(None),  # noqa: B008
) -> dict[str, Any]:
    """The active offers a customer can buy. Without `sku`: newest first, paginated. With repeated
    `sku` parameters: those offers, in the order asked, without a cursor."""
    if sku:
        result = Page(items=selectors.catalog_by_skus(sku), next_cursor=None)
    else:
        result = paginate(selectors.catalog(), limit=page.limit, cursor=page.cursor)
    return page_data(result, presenters.offer_data)
