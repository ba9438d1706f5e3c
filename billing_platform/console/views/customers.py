"""Customers: the search, a customer's page, and the grant action."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from billable.models import Customer
from billing_platform.console import billing_selectors as reads
from billing_platform.console import selectors, services
from billing_platform.console.access import ConsoleContext, console_page
from billing_platform.console.billing_forms import AdjustForm
from billing_platform.console.forms import GrantForm, SearchForm, show_error
from billing_platform.console.permissions import Action
from billing_platform.core.errors import BillingError, ValidationFailed
from billing_platform.core.pagination import Page


@console_page()
def customer_list(request: HttpRequest, console: ConsoleContext) -> HttpResponse:
    """Search by a customer id or an external id (or its beginning); newest first, paged."""
    form = SearchForm(request.GET)
    query = form.cleaned_data["q"] if form.is_valid() else ""
    page: Page[Customer]
    try:
        page = selectors.customer_search(query=query, cursor=request.GET.get("cursor") or None)
    except ValidationFailed:
        page = selectors.customer_search(query=query)
    return render(
        request,
        "console/customers.html",
        {"console": console, "form": form, "query": query, "page": page},
    )


def _customer_response(
    request: HttpRequest,
    console: ConsoleContext,
    customer: Customer,
    grant_form: GrantForm | None = None,
    status: int = 200,
    adjust_form: AdjustForm | None = None,
) -> HttpResponse:
    feature = request.GET.get("feature", "")[:64]
    try:
        ledger = selectors.customer_ledger(customer=customer, cursor=request.GET.get("ledger"))
    except ValidationFailed:
        ledger = selectors.customer_ledger(customer=customer)
    if grant_form is None and console.may(Action.CUSTOMERS_GRANT):
        grant_form = GrantForm(
            initial={"form_key": services.new_form_key()}, offers=selectors.grantable_offers()
        )
    if adjust_form is None and console.may(Action.CUSTOMERS_GRANT):
        adjust_form = AdjustForm(
            initial={"form_key": services.new_form_key()}, products=reads.quantity_products()
        )
    context: dict[str, Any] = {
        "console": console,
        "data": selectors.customer_page(customer=customer, feature=feature),
        "feature": feature,
        "ledger": ledger,
        "grant_form": grant_form,
        "adjust_form": adjust_form,
    }
    return render(request, "console/customer.html", context, status=status)


@console_page()
def customer_detail(
    request: HttpRequest, console: ConsoleContext, customer_id: str
) -> HttpResponse:
    """Entitlements and balances (and why a feature is refused), batches, ledger, usages,
    orders, holds, referrals and trials; the grant form for those allowed to grant."""
    customer = selectors.customer_get(customer_id=customer_id)
    return _customer_response(request, console, customer)


@require_POST
@console_page(Action.CUSTOMERS_GRANT)
def customer_grant(request: HttpRequest, console: ConsoleContext, customer_id: str) -> HttpResponse:
    """A bonus grant with a reason, applied once however often the form is sent; a merged
    customer's grant goes to the customer it was merged into, as the API's does."""
    customer = selectors.customer_get(customer_id=customer_id, follow_merge=True)
    form = GrantForm(request.POST, offers=selectors.grantable_offers())
    if not form.is_valid():
        return _customer_response(request, console, customer, form, status=422)
    data = form.cleaned_data
    try:
        done = services.submitted(
            actor=console.actor,
            key=data["form_key"],
            action="customer.grant",
            run=lambda: services.customer_grant(
                actor=console.actor,
                customer=customer,
                sku=data["offer"],
                reason=data["reason"],
                expires_at=data["expires_at"],
            ),
        )
    except BillingError as exc:
        show_error(form, exc)
        return _customer_response(request, console, customer, form, status=exc.status)
    if done.replayed:
        messages.info(
            request, f"This form was already sent; nothing more was done. {done.outcome.message}"
        )
    else:
        messages.success(request, done.outcome.message)
    return redirect("console:customer", customer_id=str(customer.pk))
