"""Orders: the list with its filters, an order's page, and confirm, cancel and refund.

Every member reads; admins and owners (`orders.manage`) see the actions and may send them, each
shown once more with what it will do before it is done.
"""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from billable.models import Order, OrderStatus
from billing_platform.console import billing_selectors as reads
from billing_platform.console import billing_services as actions
from billing_platform.console import services
from billing_platform.console.access import ConsoleContext, console_page
from billing_platform.console.billing_forms import (
    OrderConfirmForm,
    OrderFilterForm,
    OrderReasonForm,
)
from billing_platform.console.permissions import Action
from billing_platform.console.views.acting import act, confirmation
from billing_platform.console.views.paging import day_bounds, filters_query, page_at_cursor


@console_page()
def order_list(request: HttpRequest, console: ConsoleContext) -> HttpResponse:
    """Orders newest first, filtered by status, customer and creation dates (UTC), paged."""
    form = OrderFilterForm(request.GET)
    data = form.cleaned_data if form.is_valid() else {}
    created_from, created_before = day_bounds(data)
    query = reads.OrderQuery(
        status=data.get("status") or "",
        customer=data.get("customer") or "",
        created_from=created_from,
        created_before=created_before,
    )
    page = page_at_cursor(request, lambda cursor: reads.orders_page(query=query, cursor=cursor))
    return render(
        request,
        "console/orders.html",
        {
            "console": console,
            "form": form,
            "page": page,
            "filters": filters_query(request),
            "filtered": any(data.values()),
            "totals": reads.order_totals(page.items),
        },
    )


def _order_forms(order: Order) -> dict[str, Any]:
    key = {"form_key": services.new_form_key()}
    forms: dict[str, Any] = {}
    if order.status == OrderStatus.PENDING:
        forms["confirm_form"] = OrderConfirmForm(initial=key)
        forms["cancel_form"] = OrderReasonForm(initial={"form_key": services.new_form_key()})
    elif order.status == OrderStatus.PAID:
        forms["refund_form"] = OrderReasonForm(initial=key)
    return forms


def _order_page(
    request: HttpRequest,
    console: ConsoleContext,
    order: Order,
    status: int = 200,
    **forms: Any,
) -> HttpResponse:
    context: dict[str, Any] = {
        "console": console,
        "order": order,
        "customer": reads.order_customer(order),
        "lines": reads.order_lines(order),
        "totals": reads.order_totals([order]),
    }
    if console.may(Action.ORDERS_MANAGE):
        context |= _order_forms(order) | forms
    return render(request, "console/order.html", context, status=status)


@console_page()
def order_detail(request: HttpRequest, console: ConsoleContext, order_id: str) -> HttpResponse:
    return _order_page(request, console, reads.order_get(order_id=order_id))


@require_POST
@console_page(Action.ORDERS_MANAGE)
def order_confirm(request: HttpRequest, console: ConsoleContext, order_id: str) -> HttpResponse:
    order = reads.order_get(order_id=order_id)
    form = OrderConfirmForm(request.POST)
    if not form.is_valid():
        return _order_page(request, console, order, status=422, confirm_form=form)
    data = form.cleaned_data
    page = reverse("console:order", kwargs={"order_id": str(order.pk)})
    if not data["confirmed"]:
        return confirmation(
            request,
            console,
            form,
            title=f"Confirm the order {order.pk}?",
            consequences=[
                f"It is marked paid ({order.total.normalize():f} {order.currency})"
                + (f" with the payment id {data['payment_id']}." if data["payment_id"] else "."),
                "Its items are granted to the customer now.",
                "An order.confirmed event is sent to your webhooks.",
            ],
            button="Confirm the order",
            back=page,
            danger=False,
        )
    done = act(
        request,
        console,
        form,
        action="order.confirm",
        run=lambda: actions.order_confirm(
            actor=console.actor,
            order=order,
            payment_id=data["payment_id"] or None,
            payment_method=data["payment_method"],
        ),
    )
    if done.submitted is None:
        return _order_page(request, console, order, status=done.status, confirm_form=form)
    return redirect(page)


def _reason_action(
    request: HttpRequest,
    console: ConsoleContext,
    order_id: str,
    *,
    verb: str,
    consequences: list[str],
    run: Any,
) -> HttpResponse:
    order = reads.order_get(order_id=order_id)
    form = OrderReasonForm(request.POST)
    form_name = f"{verb}_form"
    if not form.is_valid():
        return _order_page(request, console, order, status=422, **{form_name: form})
    page = reverse("console:order", kwargs={"order_id": str(order.pk)})
    reason: str = form.cleaned_data["reason"].strip()
    if not form.cleaned_data["confirmed"]:
        return confirmation(
            request,
            console,
            form,
            title=f"{verb.capitalize()} the order {order.pk}?",
            consequences=[*consequences, "This cannot be undone."],
            button=f"{verb.capitalize()} the order",
            back=page,
        )
    done = act(
        request,
        console,
        form,
        action=f"order.{verb}",
        run=lambda: run(order, reason),
    )
    if done.submitted is None:
        return _order_page(request, console, order, status=done.status, **{form_name: form})
    return redirect(page)


@require_POST
@console_page(Action.ORDERS_MANAGE)
def order_cancel(request: HttpRequest, console: ConsoleContext, order_id: str) -> HttpResponse:
    return _reason_action(
        request,
        console,
        order_id,
        verb="cancel",
        consequences=[
            "The pending order is closed unpaid; nothing was granted, nothing is taken.",
            "An order.cancelled event is sent to your webhooks.",
        ],
        run=lambda order, reason: actions.order_cancel(
            actor=console.actor, order=order, reason=reason
        ),
    )


@require_POST
@console_page(Action.ORDERS_MANAGE)
def order_refund(request: HttpRequest, console: ConsoleContext, order_id: str) -> HttpResponse:
    return _reason_action(
        request,
        console,
        order_id,
        verb="refund",
        consequences=[
            "Every batch the order granted is revoked: what is left of them is debited "
            "(units already used stay used).",
            "The money itself is returned by your payment provider, not by Billable.",
            "An order.refunded event is sent to your webhooks.",
        ],
        run=lambda order, reason: actions.order_refund(
            actor=console.actor, order=order, reason=reason
        ),
    )
