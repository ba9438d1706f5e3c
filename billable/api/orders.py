"""`/billing/orders` and `/billing/exchange`: buying offers, for money or for a currency's units."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from ninja import Query, Status

from billable import presenters, selectors
from billable.api.inputs import actor, customer_ref
from billable.api.routers import GRANT, READ, WRITE, router
from billable.schemas import ConfirmIn, ExchangeIn, OrderIn, OrderOut, OrderPage, ReasonIn
from billable.selectors import CustomerRef
from billable.services import customers as customer_services
from billable.services import orders as order_services
from billing_platform.core.pagination import PageParams, page_data, paginate
from billing_platform.core.problems import error_responses


@router.post(
    "/orders",
    auth=WRITE,
    response={201: OrderOut, **error_responses(404, 409)},
    operation_id="billing_order_create",
    summary="Create an order at the offers' prices (status pending)",
)
def order_create(request: HttpRequest, payload: OrderIn) -> Status:
    """Create a pending order for `items` (SKUs and quantities) at the offers' current prices; the
    items and prices are a snapshot. Confirm it when the payment arrives. 422 `unknown_sku`,
    `inactive_offer`, `inactive_product`, `mixed_currencies`."""
    customer = customer_services.customer_ensure(customer_ref(payload))
    order = order_services.order_create(
        customer=customer,
        items=[order_services.LineIn(sku=i.sku, quantity=i.quantity) for i in payload.items],
        metadata=payload.metadata,
    )
    return Status(201, presenters.order_data(selectors.order_get(order_id=str(order.pk))))


@router.get(
    "/orders",
    auth=READ,
    response={200: OrderPage, **error_responses(404)},
    operation_id="billing_order_list",
    summary="List orders, newest first (optionally of one customer, by status)",
)
def order_list(
    request: HttpRequest,
    page: Query[PageParams],
    customer_id: str | None = None,
    external_id: str | None = None,
    provider: str = "default",
    status: str | None = None,
) -> dict[str, Any]:
    """Orders, newest first; optionally one customer's (`customer_id`, or `external_id` and
    `provider`) and one `status`. Paginated with `limit` and `cursor`."""
    customer = None
    if customer_id is not None or external_id is not None:
        customer = selectors.customer_require(
            CustomerRef(customer_id=customer_id, external_id=external_id, provider=provider)
        )
    result = paginate(
        selectors.order_list(customer=customer, status=status),
        limit=page.limit,
        cursor=page.cursor,
    )
    return page_data(result, presenters.order_data)


@router.get(
    "/orders/{order_id}",
    auth=READ,
    response={200: OrderOut, **error_responses(404)},
    operation_id="billing_order_get",
    summary="Get an order",
)
def order_get(request: HttpRequest, order_id: str) -> dict[str, Any]:
    """One order by id with its items and payment; 404 `order_not_found`."""
    return presenters.order_data(selectors.order_get(order_id=order_id))


@router.post(
    "/orders/{order_id}/confirm",
    auth=GRANT,
    response={200: OrderOut, **error_responses(404, 409)},
    operation_id="billing_order_confirm",
    summary="Confirm payment and activate the order's rights",
)
def order_confirm(request: HttpRequest, order_id: str, payload: ConfirmIn) -> dict[str, Any]:
    """Mark a pending order paid (`payment_id` and `payment_method` are recorded) and give the
    customer its items. 409 `order_already_paid`, `invalid_order_state`, `payment_id_conflict` (the
    payment id paid another order). Sends `order.confirmed`."""
    order = selectors.order_get(order_id=order_id)
    order = order_services.order_confirm(
        order=order,
        payment_id=payload.payment_id,
        payment_method=payload.payment_method,
        actor=actor(request),
    )
    return presenters.order_data(selectors.order_get(order_id=str(order.pk)))


@router.post(
    "/orders/{order_id}/cancel",
    auth=WRITE,
    response={200: OrderOut, **error_responses(404, 409)},
    operation_id="billing_order_cancel",
    summary="Cancel a pending order",
)
def order_cancel(request: HttpRequest, order_id: str, payload: ReasonIn) -> dict[str, Any]:
    """Cancel a pending order with an optional `reason`; nothing was granted, nothing is taken. 409
    `invalid_order_state` for a paid, cancelled or refunded order. Sends `order.cancelled`."""
    order = order_services.order_cancel(
        order=selectors.order_get(order_id=order_id), reason=payload.reason
    )
    return presenters.order_data(selectors.order_get(order_id=str(order.pk)))


@router.post(
    "/orders/{order_id}/refund",
    auth=GRANT,
    response={200: OrderOut, **error_responses(404, 409)},
    operation_id="billing_order_refund",
    summary="Refund a paid order (revokes what it granted)",
)
def order_refund(request: HttpRequest, order_id: str, payload: ReasonIn) -> dict[str, Any]:
    """Refund a paid order: the batches it granted are revoked (what is left of them is debited).
    409 `invalid_order_state` unless paid. Sends `order.refunded`."""
    order = order_services.order_refund(
        order=selectors.order_get(order_id=order_id),
        reason=payload.reason,
        actor=actor(request),
    )
    return presenters.order_data(selectors.order_get(order_id=str(order.pk)))


@router.post(
    "/exchange",
    auth=GRANT,
    response={200: OrderOut, **error_responses(402, 404, 409)},
    operation_id="billing_exchange",
    summary="Buy an offer priced in a currency product with that product's units",
)
def billing_exchange(request: HttpRequest, payload: ExchangeIn) -> dict[str, Any]:
    """Pay for an offer priced in a currency product (for example coins) with the customer's units
    of it: a paid order with `payment_method` `exchange`. 402 as consume; 422 `not_a_currency`,
    `unknown_sku`, `inactive_offer`."""
    customer = customer_services.customer_ensure(customer_ref(payload))
    order = order_services.offer_buy_with_currency(
        customer=customer, sku=payload.sku, actor=actor(request)
    )
    return presenters.order_data(selectors.order_get(order_id=str(order.pk)))
