"""Merging a customer into another and erasing a customer: neither can be undone, so only admins
and owners may (`customers.merge`), each with a reason and a confirmation page that says what
will happen, through the engine's services behind `POST /billing/customers/merge` and
`DELETE /billing/customers/{id}`."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse

from billable.models import Customer
from billing_platform.console import billing_selectors as reads
from billing_platform.console import billing_services as actions
from billing_platform.console import selectors, services
from billing_platform.console.access import ConsoleContext, console_page
from billing_platform.console.billing_forms import EraseForm, MergeForm
from billing_platform.console.permissions import Action
from billing_platform.console.views.acting import act, confirmation


def _page(
    request: HttpRequest,
    console: ConsoleContext,
    customer: Customer,
    form: MergeForm | EraseForm,
    *,
    status: int = 200,
    **extra: Any,
) -> HttpResponse:
    template = "console/customer_merge.html" if isinstance(form, MergeForm) else (
        "console/customer_erase.html"
    )
    context = {"console": console, "customer": customer, "form": form, **extra}
    return render(request, template, context, status=status)


def _target(text: str) -> tuple[Customer | None, str, int]:
    """The customer that stays, named by an id or an exact external id; else why not, with the
    answer's status (another team's customer is simply unknown here: 404)."""
    found = reads.customers_named(text) or []
    if not found:
        return None, "No customer of this team has this id or external id.", 404
    if len(found) > 1:
        return None, "More than one customer has this external id: name it by its id.", 422
    return found[0], "", 200


@console_page(Action.CUSTOMERS_MERGE)
def customer_merge(
    request: HttpRequest, console: ConsoleContext, customer_id: str
) -> HttpResponse:
    """Merge this customer (the source) into another (the target) of the same team: everything
    of the source moves to the target, and the source's id leads to the target from then on."""
    source = selectors.customer_get(customer_id=customer_id)
    if request.method != "POST":
        form = MergeForm(initial={"form_key": services.new_form_key()})
        return _page(request, console, source, form)
    form = MergeForm(request.POST)
    if not form.is_valid():
        return _page(request, console, source, form, status=422)
    data = form.cleaned_data
    target, problem, status = _target(data["target"])
    if target is None:
        form.add_error("target", problem)
        return _page(request, console, source, form, status=status)
    if not data["confirmed"]:
        identities = ", ".join(f"{i.provider}: {i.external_id}" for i in source.identities.all())
        return confirmation(
            request,
            console,
            form,
            title=f"Merge the customer {source.pk} into {target.pk}?",
            consequences=[
                f"Everything of {source.pk} moves to {target.pk}: its identities "
                f"({identities or 'none'}), batches and their ledger, orders, holds, usages, "
                "grants, subscriptions and referrals; its metadata joins the target's (the "
                "target's values win).",
                f"From then on the id {source.pk} leads to {target.pk}, in the API too.",
                f"Reason: {data['reason']}",
                "A customer.merged event is sent to your webhooks. This cannot be undone.",
            ],
            button="Merge the customers",
            back=reverse("console:customer_merge", args=[str(source.pk)]),
        )
    done = act(
        request,
        console,
        form,
        action="customer.merge",
        run=lambda: actions.customer_merge(
            actor=console.actor, source=source, target=target, reason=data["reason"]
        ),
    )
    if done.submitted is None:
        return _page(request, console, source, form, status=done.status)
    return redirect("console:customer", customer_id=str(target.pk))


@console_page(Action.CUSTOMERS_MERGE)
def customer_erase(
    request: HttpRequest, console: ConsoleContext, customer_id: str
) -> HttpResponse:
    """Erase a customer's identities and metadata (a merged customer's id erases the customer it
    was merged into, with every customer merged into that one); the ledger stays, anonymous."""
    customer = selectors.customer_get(customer_id=customer_id, follow_merge=True)
    merged = reads.merged_into_count(customer)
    if request.method != "POST":
        form = EraseForm(initial={"form_key": services.new_form_key()})
        return _page(request, console, customer, form, merged=merged)
    form = EraseForm(request.POST)
    if not form.is_valid():
        return _page(request, console, customer, form, status=422, merged=merged)
    data = form.cleaned_data
    if not data["confirmed"]:
        return confirmation(
            request,
            console,
            form,
            title=f"Erase the customer {customer.pk}?",
            consequences=[
                f"Its {customer.identities.count()} identities and its metadata are deleted"
                + (
                    f", and those of the {merged} customer{'s' if merged > 1 else ''} merged "
                    "into it"
                    if merged
                    else ""
                )
                + ": nobody can be found by them any more, and the same person coming back is "
                "a new customer.",
                "Its live subscriptions end now (cancelled, nothing renews). Its batches, "
                "ledger, orders and usages stay, without anything that names the person.",
                f"Reason: {data['reason']}",
                "Stored webhook events and API answers lose what names the person. This cannot "
                "be undone.",
            ],
            button="Erase the customer",
            back=reverse("console:customer_erase", args=[str(customer.pk)]),
        )
    done = act(
        request,
        console,
        form,
        action="customer.erase",
        run=lambda: actions.customer_erase(
            actor=console.actor, customer=customer, reason=data["reason"]
        ),
    )
    if done.submitted is None:
        return _page(request, console, customer, form, status=done.status, merged=merged)
    return redirect("console:customer", customer_id=str(customer.pk))
