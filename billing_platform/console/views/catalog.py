"""The catalog: products, offers and plans; creating, editing and (de)activating them.

Every member reads; admins and owners (`catalog.manage`) see the forms and may send them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from django import forms
from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse, QueryDict
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from billable.models import Offer, Plan, Product
from billable.services.plans import Terms, terms_of
from billing_platform.console import billing_selectors as reads
from billing_platform.console import billing_services as actions
from billing_platform.console import services
from billing_platform.console.access import ConsoleContext, console_page
from billing_platform.console.billing_forms import (
    ActiveForm,
    ConfirmedForm,
    CostRows,
    EntitlementRows,
    FeatureRows,
    ItemRows,
    MetadataRows,
    OfferForm,
    PlanForm,
    ProductForm,
    costs_of,
    entitlement_rows,
    entitlements_of,
    features_of,
    items_of,
    metadata_of,
    metadata_rows,
    metadata_too_large,
    with_more_rows,
)
from billing_platform.console.permissions import Action
from billing_platform.console.views.acting import act, confirmation
from billing_platform.core.errors import ValidationFailed
from billing_platform.core.pagination import Page

MORE_ROWS = "more_rows"


def _page(request: HttpRequest, read: Any) -> Page[Any]:
    """A list page at the request's cursor (the first page for a cursor it did not issue)."""
    try:
        page: Page[Any] = read(cursor=request.GET.get("cursor") or None)
    except ValidationFailed:
        page = read()
    return page


def _target_key(outcome: services.Outcome) -> str:
    return outcome.target.partition(":")[2]


# --- Lists and detail pages


@console_page()
def product_list(request: HttpRequest, console: ConsoleContext) -> HttpResponse:
    page = _page(request, reads.products_page)
    return render(
        request,
        "console/catalog_products.html",
        {"console": console, "page": page, "tab": "products"},
    )


@console_page()
def offer_list(request: HttpRequest, console: ConsoleContext) -> HttpResponse:
    page = _page(request, reads.offers_page)
    return render(
        request, "console/catalog_offers.html", {"console": console, "page": page, "tab": "offers"}
    )


@console_page()
def plan_list(request: HttpRequest, console: ConsoleContext) -> HttpResponse:
    page = _page(request, reads.plans_page)
    return render(
        request, "console/catalog_plans.html", {"console": console, "page": page, "tab": "plans"}
    )


def _active_form(active: bool) -> ActiveForm:
    return ActiveForm(
        initial={"form_key": services.new_form_key(), "active": "0" if active else "1"}
    )


@console_page()
def product_detail(request: HttpRequest, console: ConsoleContext, key: str) -> HttpResponse:
    product = reads.product_get(key=key)
    context = {
        "console": console,
        "tab": "products",
        "product": product,
        "metadata": sorted((k, v) for k, v in product.metadata.items() if k != "features"),
        "costs": sorted(product.credit_costs.items()),
        "offers": reads.offers_with_product(product),
        "plans": reads.plans_with_product(product),
        "active_form": _active_form(product.is_active)
        if console.may(Action.CATALOG_MANAGE)
        else None,
    }
    return render(request, "console/catalog_product.html", context)


@console_page()
def offer_detail(request: HttpRequest, console: ConsoleContext, sku: str) -> HttpResponse:
    offer = reads.offer_get(sku=sku)
    context = {
        "console": console,
        "tab": "offers",
        "offer": offer,
        "metadata": sorted(offer.metadata.items()),
        "active_form": _active_form(offer.is_active)
        if console.may(Action.CATALOG_MANAGE)
        else None,
    }
    return render(request, "console/catalog_offer.html", context)


@console_page()
def plan_detail(request: HttpRequest, console: ConsoleContext, key: str) -> HttpResponse:
    data = reads.plan_page(key=key)
    context = {
        "console": console,
        "tab": "plans",
        "data": data,
        "metadata": sorted(data.plan.metadata.items()),
        "retire_form": ConfirmedForm(initial={"form_key": services.new_form_key()})
        if console.may(Action.CATALOG_MANAGE)
        else None,
        "active_form": _active_form(data.plan.is_active)
        if console.may(Action.CATALOG_MANAGE)
        else None,
    }
    return render(request, "console/catalog_plan.html", context)


# --- Forms with rows: one flow for creating and editing products, offers and plans


def _with_more_rows(data: QueryDict | None, more: bool, *prefixes: str) -> QueryDict | None:
    """The sent data with blank rows added to each formset when *More rows* was pressed."""
    if data is not None and more:
        for prefix in prefixes:
            data = with_more_rows(data, prefix)
    return data


def _checked_metadata(main: forms.Form, rows: Any) -> dict[str, Any]:
    """The metadata rows' object; a name given twice or an object over 16 KiB is an error on
    the main form, as the API's schema refuses them."""
    metadata, named_twice = metadata_of(rows)
    if named_twice:
        main.add_error(None, f"Metadata names {', '.join(named_twice)} twice.")
    too_large = metadata_too_large(metadata)
    if too_large:
        main.add_error(None, too_large)
    return metadata


class _RowsForms(Protocol):
    """A main form and its rows, bound or not (`_ProductForms`, `_OfferForms`)."""

    @property
    def main(self) -> forms.Form: ...

    def is_valid(self) -> bool: ...

    def context(self) -> dict[str, Any]: ...


F = TypeVar("F", bound=_RowsForms)


def _rows_form_view(
    request: HttpRequest,
    console: ConsoleContext,
    *,
    build: Callable[[QueryDict | None, bool], F],
    template: str,
    context: dict[str, Any],
    action: str,
    run: Callable[[F], services.Outcome],
    after: Callable[[F, services.Submitted], HttpResponse],
) -> HttpResponse:
    """Show the form; on *More rows* show it again with blank rows, saving nothing; on a valid
    POST run the action once (`act`) and answer with `after`, or show the form with its errors.
    """

    def show(forms: F, status: int = 200) -> HttpResponse:
        return render(
            request,
            template,
            {"console": console, **context, **forms.context()},
            status=status,
        )

    if request.method != "POST":
        return show(build(None, False))
    more = MORE_ROWS in request.POST
    forms = build(request.POST, more)
    if more:
        return show(forms)
    if not forms.is_valid():
        return show(forms, 422)
    done = act(request, console, forms.main, action=action, run=lambda: run(forms))
    if done.submitted is None:
        return show(forms, done.status)
    return after(forms, done.submitted)


# --- Products: create and edit


class _ProductForms:
    """The product form and its rows (features, credit costs, metadata), bound or not."""

    def __init__(
        self, data: QueryDict | None, *, product: Product | None = None, more: bool = False
    ) -> None:
        data = _with_more_rows(data, more, "features", "costs", "metadata")
        editing = product is not None
        initial: dict[str, Any] = {"form_key": services.new_form_key()}
        features: list[dict[str, Any]] = []
        costs: list[dict[str, Any]] = []
        metadata: list[dict[str, str]] = []
        if product is not None:
            initial |= {
                "name": product.name,
                "product_type": product.product_type,
                "description": product.description,
                "is_currency": product.is_currency,
            }
            features = [{"name": name} for name in product.features]
            costs = [{"feature": f, "credits": c} for f, c in sorted(product.credit_costs.items())]
            metadata = metadata_rows(product.metadata, skip=("features",))
        self.main = ProductForm(data, initial=initial, editing=editing)
        # Rows are compared with their initial values only when shown, never when sent: a sent
        # row that equals its initial value is still a row.
        if data is not None:
            features, costs, metadata = [], [], []
        self.features = FeatureRows(data, initial=features, prefix="features")
        self.costs = CostRows(data, initial=costs, prefix="costs")
        self.metadata = MetadataRows(data, initial=metadata, prefix="metadata")

    def is_valid(self) -> bool:
        valid = all(
            [
                self.main.is_valid(),
                self.features.is_valid(),
                self.costs.is_valid(),
                self.metadata.is_valid(),
            ]
        )
        if not valid:
            return False
        _costs, twice = costs_of(self.costs)
        if twice:
            self.main.add_error(None, f"Credit costs name {', '.join(twice)} twice.")
        if "features" in _checked_metadata(self.main, self.metadata):
            self.main.add_error(None, "The features are edited in their own rows, not metadata.")
        return not self.main.errors

    def fields(self) -> actions.ProductFields:
        data = self.main.cleaned_data
        return actions.ProductFields(
            name=data["name"],
            product_type=data["product_type"],
            description=data["description"],
            is_currency=data["is_currency"],
            features=features_of(self.features),
            credit_costs=costs_of(self.costs)[0],
            metadata=metadata_of(self.metadata)[0],
        )

    def context(self) -> dict[str, Any]:
        return {
            "form": self.main,
            "features": self.features,
            "costs": self.costs,
            "metadata": self.metadata,
        }


@console_page(Action.CATALOG_MANAGE)
def product_new(request: HttpRequest, console: ConsoleContext) -> HttpResponse:
    """A new product: key, name, type, features, credit costs and metadata as rows."""
    return _rows_form_view(
        request,
        console,
        build=lambda data, more: _ProductForms(data, more=more),
        template="console/catalog_product_form.html",
        context={"tab": "products", "product": None},
        action="product.create",
        run=lambda forms: actions.product_create(
            actor=console.actor, key=forms.main.cleaned_data["key"], fields=forms.fields()
        ),
        after=lambda forms, done: redirect(
            "console:product",
            key=_target_key(done.outcome) or forms.main.cleaned_data["key"].upper(),
        ),
    )


@console_page(Action.CATALOG_MANAGE)
def product_edit(request: HttpRequest, console: ConsoleContext, key: str) -> HttpResponse:
    product = reads.product_get(key=key)
    return _rows_form_view(
        request,
        console,
        build=lambda data, more: _ProductForms(data, product=product, more=more),
        template="console/catalog_product_form.html",
        context={"tab": "products", "product": product},
        action="product.update",
        run=lambda forms: actions.product_update(
            actor=console.actor, product=product, fields=forms.fields()
        ),
        after=lambda forms, done: redirect("console:product", key=product.key),
    )


# --- Offers: create and edit


class _OfferForms:
    """The offer form and its rows (items, metadata), bound or not."""

    def __init__(
        self, data: QueryDict | None, *, offer: Offer | None = None, more: bool = False
    ) -> None:
        data = _with_more_rows(data, more, "items", "metadata")
        initial: dict[str, Any] = {"form_key": services.new_form_key()}
        items: list[dict[str, Any]] = []
        metadata: list[dict[str, str]] = []
        if offer is not None:
            initial |= {
                "name": offer.name,
                "price": offer.price.normalize() if offer.price else offer.price,
                "currency": offer.currency,
                "description": offer.description,
            }
            items = [
                {
                    "product": item.product.key,
                    "quantity": item.quantity,
                    "period_unit": item.period_unit,
                    "period_value": item.period_value,
                }
                for item in offer.items.all()
            ]
            metadata = metadata_rows(offer.metadata)
        if data is not None:
            items, metadata = [], []
        products = reads.item_products()
        self.main = OfferForm(data, initial=initial, editing=offer is not None)
        self.items = ItemRows(
            data, initial=items, prefix="items", form_kwargs={"products": products}
        )
        self.metadata = MetadataRows(data, initial=metadata, prefix="metadata")

    def is_valid(self) -> bool:
        valid = all([self.main.is_valid(), self.items.is_valid(), self.metadata.is_valid()])
        if not valid:
            return False
        if not items_of(self.items):
            self.main.add_error(None, "An offer has at least one item: choose a product.")
        _checked_metadata(self.main, self.metadata)
        return not self.main.errors

    def fields(self) -> actions.OfferFields:
        data = self.main.cleaned_data
        return actions.OfferFields(
            name=data["name"],
            price=data["price"],
            currency=data["currency"],
            description=data["description"],
            items=items_of(self.items),
            metadata=metadata_of(self.metadata)[0],
        )

    def context(self) -> dict[str, Any]:
        return {"form": self.main, "items": self.items, "metadata": self.metadata}


@console_page(Action.CATALOG_MANAGE)
def offer_new(request: HttpRequest, console: ConsoleContext) -> HttpResponse:
    """A new offer: SKU, name, price and currency, items as rows, metadata as rows."""
    return _rows_form_view(
        request,
        console,
        build=lambda data, more: _OfferForms(data, more=more),
        template="console/catalog_offer_form.html",
        context={"tab": "offers", "offer": None},
        action="offer.create",
        run=lambda forms: actions.offer_create(
            actor=console.actor, sku=forms.main.cleaned_data["sku"], fields=forms.fields()
        ),
        after=lambda forms, done: redirect(
            "console:offer", sku=_target_key(done.outcome) or forms.main.cleaned_data["sku"].upper()
        ),
    )


@console_page(Action.CATALOG_MANAGE)
def offer_edit(request: HttpRequest, console: ConsoleContext, sku: str) -> HttpResponse:
    offer = reads.offer_get(sku=sku)
    return _rows_form_view(
        request,
        console,
        build=lambda data, more: _OfferForms(data, offer=offer, more=more),
        template="console/catalog_offer_form.html",
        context={"tab": "offers", "offer": offer},
        action="offer.update",
        run=lambda forms: actions.offer_update(
            actor=console.actor, offer=offer, fields=forms.fields()
        ),
        after=lambda forms, done: redirect("console:offer", sku=offer.sku),
    )


# --- Plans: create, and change (new terms make a new version)


class _PlanForms:
    """The plan form and its rows (entitlements, metadata), bound or not."""

    def __init__(
        self, data: QueryDict | None, *, plan: Plan | None = None, more: bool = False
    ) -> None:
        data = _with_more_rows(data, more, "entitlements", "metadata")
        initial: dict[str, Any] = {"form_key": services.new_form_key()}
        entitlements: list[dict[str, Any]] = []
        metadata: list[dict[str, str]] = []
        if plan is not None:
            terms = terms_of(reads.plan_page(key=plan.key).current)
            initial |= {
                "name": plan.name,
                "description": plan.description,
                "upgrade_allowance": plan.upgrade_allowance,
                "price": terms.price.normalize(),
                "currency": terms.currency,
                "interval_count": terms.interval_count,
                "interval_unit": terms.interval_unit,
                "trial_days": terms.trial_days,
            }
            entitlements = entitlement_rows(terms.entitlements)
            metadata = metadata_rows(plan.metadata)
        if data is not None:
            entitlements, metadata = [], []
        self.main = PlanForm(data, initial=initial, editing=plan is not None)
        self.entitlements = EntitlementRows(
            data,
            initial=entitlements,
            prefix="entitlements",
            form_kwargs={"products": reads.item_products()},
        )
        self.metadata = MetadataRows(data, initial=metadata, prefix="metadata")

    def is_valid(self) -> bool:
        valid = all([self.main.is_valid(), self.entitlements.is_valid(), self.metadata.is_valid()])
        if not valid:
            return False
        _checked_metadata(self.main, self.metadata)
        return not self.main.errors

    def fields(self) -> actions.PlanFields:
        data = self.main.cleaned_data
        return actions.PlanFields(
            name=data["name"],
            description=data["description"],
            upgrade_allowance=data["upgrade_allowance"],
            metadata=metadata_of(self.metadata)[0],
            terms=Terms(
                interval_unit=data["interval_unit"],
                interval_count=data["interval_count"],
                price=data["price"],
                currency=data["currency"],
                trial_days=data["trial_days"],
                entitlements=entitlements_of(self.entitlements),
            ),
        )

    def context(self) -> dict[str, Any]:
        return {"form": self.main, "entitlements": self.entitlements, "metadata": self.metadata}


@console_page(Action.CATALOG_MANAGE)
def plan_new(request: HttpRequest, console: ConsoleContext) -> HttpResponse:
    """A new plan: key, name, terms (price per interval, trial), entitlements and metadata as
    rows; its terms are version 1."""
    return _rows_form_view(
        request,
        console,
        build=lambda data, more: _PlanForms(data, more=more),
        template="console/catalog_plan_form.html",
        context={"tab": "plans", "plan": None},
        action="plan.create",
        run=lambda forms: actions.plan_create(
            actor=console.actor, key=forms.main.cleaned_data["key"], fields=forms.fields()
        ),
        after=lambda forms, done: redirect(
            "console:plan", key=_target_key(done.outcome) or forms.main.cleaned_data["key"].upper()
        ),
    )


@console_page(Action.CATALOG_MANAGE)
def plan_edit(request: HttpRequest, console: ConsoleContext, key: str) -> HttpResponse:
    plan = reads.plan_page(key=key).plan
    return _rows_form_view(
        request,
        console,
        build=lambda data, more: _PlanForms(data, plan=plan, more=more),
        template="console/catalog_plan_form.html",
        context={"tab": "plans", "plan": plan},
        action="plan.update",
        run=lambda forms: actions.plan_update(
            actor=console.actor, plan=plan, fields=forms.fields()
        ),
        after=lambda forms, done: redirect("console:plan", key=plan.key),
    )


@require_POST
@console_page(Action.CATALOG_MANAGE)
def plan_version_retire(
    request: HttpRequest, console: ConsoleContext, key: str, version: int
) -> HttpResponse:
    """Retire a version of a plan's terms, confirmed first: no new subscription takes it."""
    data = reads.plan_page(key=key)
    found = next((v for v in data.versions if v.version == version), None)
    if found is None:
        raise Http404
    page = reverse("console:plan", kwargs={"key": data.plan.key})
    form = ConfirmedForm(request.POST)
    if not form.is_valid():
        messages.error(request, "This form is out of date: reload the page.")
        return redirect(page)
    if not form.cleaned_data["confirmed"]:
        return confirmation(
            request,
            console,
            form,
            title=f"Retire version {version} of the plan {data.plan.key}?",
            consequences=[
                "No new subscription or plan change can take this version.",
                "Its subscribers keep it and renew on it as before.",
                "A retired version cannot be brought back.",
            ],
            button=f"Retire version {version}",
            back=page,
        )
    act(
        request,
        console,
        form,
        action="plan.retire_version",
        run=lambda: actions.plan_version_retire(actor=console.actor, plan=data.plan, version=found),
    )
    return redirect(page)


# --- Activating and deactivating (a deactivation is confirmed first)


def _set_active(
    request: HttpRequest,
    console: ConsoleContext,
    *,
    kind: str,
    name: str,
    page: str,
    consequences: list[str],
    run: Any,
) -> HttpResponse:
    form = ActiveForm(request.POST)
    if not form.is_valid():
        messages.error(request, "This form is out of date: reload the page.")
        return redirect(page)
    active: bool = form.cleaned_data["active"]
    if not active and not form.cleaned_data["confirmed"]:
        return confirmation(
            request,
            console,
            form,
            title=f"Deactivate the {kind} {name}?",
            consequences=consequences,
            button=f"Deactivate {name}",
            back=page,
        )
    action = f"{kind}.{'activate' if active else 'deactivate'}"
    act(request, console, form, action=action, run=lambda: run(active))
    return redirect(page)


@require_POST
@console_page(Action.CATALOG_MANAGE)
def product_active(request: HttpRequest, console: ConsoleContext, key: str) -> HttpResponse:
    product = reads.product_get(key=key)
    return _set_active(
        request,
        console,
        kind="product",
        name=product.key,
        page=reverse("console:product", kwargs={"key": product.key}),
        consequences=[
            "Offers holding it can no longer be ordered or granted.",
            "What customers already hold stays usable.",
            "A product.deactivated event is sent to your webhooks.",
        ],
        run=lambda active: actions.product_set_active(
            actor=console.actor, product=product, active=active
        ),
    )


@require_POST
@console_page(Action.CATALOG_MANAGE)
def offer_active(request: HttpRequest, console: ConsoleContext, sku: str) -> HttpResponse:
    offer = reads.offer_get(sku=sku)
    return _set_active(
        request,
        console,
        kind="offer",
        name=offer.sku,
        page=reverse("console:offer", kwargs={"sku": offer.sku}),
        consequences=[
            "It leaves the catalog: it can no longer be ordered or granted.",
            "Orders already made keep their items and prices.",
        ],
        run=lambda active: actions.offer_set_active(
            actor=console.actor, offer=offer, active=active
        ),
    )


@require_POST
@console_page(Action.CATALOG_MANAGE)
def plan_active(request: HttpRequest, console: ConsoleContext, key: str) -> HttpResponse:
    plan = reads.plan_page(key=key).plan
    return _set_active(
        request,
        console,
        kind="plan",
        name=plan.key,
        page=reverse("console:plan", kwargs={"key": plan.key}),
        consequences=[
            "New subscriptions can no longer take it.",
            "Its subscribers keep their terms and renew as before.",
        ],
        run=lambda active: actions.plan_set_active(actor=console.actor, plan=plan, active=active),
    )
