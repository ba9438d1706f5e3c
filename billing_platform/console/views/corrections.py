"""A customer's corrections: a manual adjustment and revoking a batch, each with a reason and a
confirmation, for those who may act for customers (`customers.grant`: support, admin, owner)."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse

from billable.models import BatchState
from billing_platform.console import billing_selectors as reads
from billing_platform.console import billing_services as actions
from billing_platform.console import selectors, services
from billing_platform.console.access import ConsoleContext, console_page
from billing_platform.console.billing_forms import AdjustForm, RevokeForm
from billing_platform.console.permissions import Action
from billing_platform.console.views.acting import act, confirmation
from billing_platform.console.views.customers import _customer_response


@console_page(Action.CUSTOMERS_GRANT)
def customer_adjust(
    request: HttpRequest, console: ConsoleContext, customer_id: str
) -> HttpResponse:
    """Credit or debit a quantity product's units with a reason, as `POST
    /billing/adjustments`; a merged customer's adjustment goes to the one it was merged into."""
    if request.method != "POST":
        return redirect(reverse("console:customer", args=[customer_id]) + "#adjust")
    customer = selectors.customer_get(customer_id=customer_id, follow_merge=True)
    form = AdjustForm(request.POST, products=reads.quantity_products())
    if not form.is_valid():
        return _customer_response(request, console, customer, status=422, adjust_form=form)
    data = form.cleaned_data
    page = reverse("console:customer", args=[str(customer.pk)])
    amount: int = data["amount"]
    if not data["confirmed"]:
        credit = amount > 0
        expiry = data["expires_at"]
        if not credit:
            what = "these units are taken from what it holds, soonest-expiring first."
        elif expiry:
            what = f"a new batch of these units, expiring {expiry:%Y-%m-%d %H:%M} UTC."
        else:
            what = "a new batch of these units."
        return confirmation(
            request,
            console,
            form,
            title=f"{'Credit' if credit else 'Debit'} {abs(amount)} {data['product']}?",
            consequences=[
                f"Customer {customer.pk}: {what}",
                f"Reason: {data['reason']}",
                "It is written to the ledger and an adjustment.created event is sent to your "
                "webhooks. A later adjustment can correct it; this one stays in the ledger.",
            ],
            button="Credit the units" if credit else "Debit the units",
            back=page + "#adjust",
            danger=not credit,
        )
    done = act(
        request,
        console,
        form,
        action="customer.adjust",
        run=lambda: actions.customer_adjust(
            actor=console.actor,
            customer=customer,
            product_key=data["product"],
            amount=amount,
            reason=data["reason"],
            expires_at=data["expires_at"],
        ),
    )
    if done.submitted is None:
        return _customer_response(request, console, customer, status=done.status, adjust_form=form)
    return redirect(page)


@console_page(Action.CUSTOMERS_GRANT)
def batch_revoke(
    request: HttpRequest, console: ConsoleContext, customer_id: str, batch_id: str
) -> HttpResponse:
    """Take back what is left of one of the customer's batches, with a reason, as `POST
    /billing/batches/{id}/revoke`; the batch must be this customer's (404 otherwise)."""
    customer = selectors.customer_get(customer_id=customer_id)
    batch = reads.customer_batch(customer=customer, batch_id=batch_id)
    page = reverse("console:customer", args=[str(customer.pk)])
    status = 200
    if request.method == "POST":
        form = RevokeForm(request.POST)
        if form.is_valid() and not form.cleaned_data["confirmed"]:
            return confirmation(
                request,
                console,
                form,
                title=f"Revoke the batch {batch.pk}?",
                consequences=[
                    f"Its {batch.remaining} remaining units of {batch.product.key} are debited "
                    "and the batch closes as revoked; units already used stay used.",
                    f"Reason: {form.cleaned_data['reason']}",
                    "A batch.revoked event is sent to your webhooks. This cannot be undone.",
                ],
                button="Revoke the batch",
                back=page + "#batches",
            )
        if form.is_valid():
            done = act(
                request,
                console,
                form,
                action="customer.revoke_batch",
                run=lambda: actions.customer_batch_revoke(
                    actor=console.actor,
                    customer=customer,
                    batch=batch,
                    reason=form.cleaned_data["reason"],
                ),
            )
            if done.submitted is not None:
                return redirect(page + "#batches")
            status = done.status
        else:
            status = 422
    else:
        form = RevokeForm(initial={"form_key": services.new_form_key()})
    return render(
        request,
        "console/batch_revoke.html",
        {
            "console": console,
            "customer": customer,
            "batch": batch,
            "form": form,
            "revocable": batch.state == BatchState.ACTIVE,
        },
        status=status,
    )
