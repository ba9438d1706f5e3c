"""The developers pages: API keys, webhook endpoints and their delivery log.

Admins and owners only (`developers.manage`), to read as to act: a webhook URL can carry a
credential in its path or query (an n8n Webhook node's URL is the workflow's secret) and the
delivery log shows what was sent, and the API gives both only to keys with `admin`. A new key's
secret and a new or rotated signing secret are shown once: the action answers with a redirect
(Post/Redirect/Get) and the secret waits, encrypted in the session, for the page it leads to
(`billing_platform.core.shown_once`, as in the operators' admin).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django import forms
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from billing_platform.console import developers_selectors as reads
from billing_platform.console import developers_services as actions
from billing_platform.console import services
from billing_platform.console.access import ConsoleContext, console_page
from billing_platform.console.developers_forms import (
    DeliveryFilterForm,
    EndpointActiveForm,
    EndpointConfirmedForm,
    EndpointCreateForm,
    EndpointTestForm,
    EndpointTypesForm,
    KeyCreateForm,
    KeyRevokeForm,
    RedeliverForm,
)
from billing_platform.console.permissions import Action
from billing_platform.console.views.acting import act, confirmation
from billing_platform.core.errors import ValidationFailed
from billing_platform.core.pagination import Page
from billing_platform.core.shown_once import keep_once, take_once
from billing_platform.webhooks.models import Delivery, Endpoint
from tenants.models import ApiKey

MANAGE = Action.DEVELOPERS_MANAGE
# The kinds of secret held for the next page (`shown_once`); names, not secrets.
KEY_SECRET = "console.api-key"  # noqa: S105
WEBHOOK_SECRET = "console.webhook-secret"  # noqa: S105


def _key() -> dict[str, str]:
    return {"form_key": services.new_form_key()}


def _page_or_first(read: Any, cursor: str | None) -> Any:
    """A page at `cursor`; the first page for a cursor this list did not issue."""
    try:
        return read(cursor)
    except ValidationFailed:
        return read(None)


def _target_id(done: services.Submitted) -> str:
    """The object id of an outcome's target (`key:<id>`, `webhook:<id>`)."""
    return done.outcome.target.partition(":")[2]


# --- API keys


def _keys_page(
    request: HttpRequest, console: ConsoleContext, *, form: KeyCreateForm | None = None,
    status: int = 200,
) -> HttpResponse:
    tenant = console.tenant
    page: Page[ApiKey] = _page_or_first(
        lambda cursor: reads.keys_page(tenant=tenant, cursor=cursor),
        request.GET.get("cursor") or None,
    )
    return render(
        request,
        "console/developers.html",
        {
            "console": console,
            "page": page,
            "rows": [(key, reads.key_status(key)) for key in page.items],
            "form": form
            or KeyCreateForm(initial={**_key(), "scopes": ["billing:read", "billing:write"]}),
            "endpoint_count": len(reads.endpoints(tenant=tenant)),
        },
        status=status,
    )


@console_page(MANAGE)
def developers(request: HttpRequest, console: ConsoleContext) -> HttpResponse:
    return _keys_page(request, console)


def _create_with_secret(
    request: HttpRequest,
    console: ConsoleContext,
    form: forms.Form,
    *,
    page: Callable[..., HttpResponse],
    action: str,
    run: Callable[[actions.NewSecret], services.Outcome],
    kind: str,
    shown_at: Callable[[str], HttpResponse],
) -> HttpResponse:
    """Create a key or an endpoint once for the form, keep its new secret for the one page that
    shows it (Post/Redirect/Get), and lead there; a refusal shows `page` with the form."""
    if not form.is_valid():
        return page(request, console, form=form, status=422)
    new = actions.NewSecret()
    done = act(request, console, form, action=action, run=lambda: run(new))
    if done.submitted is None:
        return page(request, console, form=form, status=done.status)
    if not done.submitted.replayed:
        keep_once(request, kind=kind, object_id=new.object_id, secret=new.secret)
    return shown_at(_target_id(done.submitted))


@require_POST
@console_page(MANAGE)
def key_create(request: HttpRequest, console: ConsoleContext) -> HttpResponse:
    form = KeyCreateForm(request.POST)
    return _create_with_secret(
        request,
        console,
        form,
        page=_keys_page,
        action="key.create",
        run=lambda new: actions.key_create(
            actor=console.actor,
            name=form.cleaned_data["name"].strip(),
            scopes=list(form.cleaned_data["scopes"]),
            expires_at=form.cleaned_data["expires_at"],
            into=new,
        ),
        kind=KEY_SECRET,
        shown_at=lambda key_id: redirect("console:developer_key", key_id=key_id),
    )


def _api_base(request: HttpRequest) -> str:
    return request.build_absolute_uri("/api/v1").rstrip("/")


def _try_it(key: ApiKey, api_base: str, secret: str) -> dict[str, str]:
    """A first call for the new key, with a scope it holds."""
    if "billing:read" in key.scopes or "admin" not in key.scopes:
        path = "/billing/balance?provider=n8n&external_id=credential-check"
        says = "the balance of an identity nobody has yet: 200, with can_use false"
        if "billing:read" not in key.scopes:
            says = "403 insufficient_scope (the key lacks billing:read), which proves it is known"
    else:
        path = "/webhooks/endpoints"
        says = "the tenant's webhook endpoints"
    return {
        "curl": f"curl -s -H 'X-API-Key: {secret}' '{api_base}{path}'",
        "says": says,
    }


@console_page(MANAGE)
def key_detail(request: HttpRequest, console: ConsoleContext, key_id: str) -> HttpResponse:
    return _key_page(request, console, reads.key_get(tenant=console.tenant, key_id=key_id))


def _key_page(
    request: HttpRequest, console: ConsoleContext, key: ApiKey, *,
    form: KeyRevokeForm | None = None, status: int = 200,
) -> HttpResponse:
    secret = take_once(request, kind=KEY_SECRET, object_id=str(key.pk))
    api_base = _api_base(request)
    context: dict[str, Any] = {
        "console": console,
        "key": key,
        "status": reads.key_status(key),
        "secret": secret,
        "api_base": api_base,
        "try_it": _try_it(key, api_base, secret) if secret else None,
    }
    if key.revoked_at is None:
        context["revoke_form"] = form or KeyRevokeForm(initial=_key())
    return render(request, "console/developer_key.html", context, status=status)


@require_POST
@console_page(MANAGE)
def key_revoke(request: HttpRequest, console: ConsoleContext, key_id: str) -> HttpResponse:
    key = reads.key_get(tenant=console.tenant, key_id=key_id)
    form = KeyRevokeForm(request.POST)
    if not form.is_valid():
        return _key_page(request, console, key, form=form, status=422)
    page = reverse("console:developer_key", kwargs={"key_id": str(key.pk)})
    if not form.cleaned_data["confirmed"]:
        return confirmation(
            request,
            console,
            form,
            title=f"Revoke the key {key.name} ({key.prefix}…)?",
            consequences=[
                "Every request with this key is refused (401 api_key_revoked) within a second, "
                "on every server.",
                "Whatever uses it (an n8n credential, a script) stops working until it is given "
                "another key.",
                "This cannot be undone.",
            ],
            button="Revoke the key",
            back=page,
        )
    done = act(
        request,
        console,
        form,
        action="key.revoke",
        run=lambda: actions.key_revoke(actor=console.actor, key=key),
    )
    if done.submitted is None:
        return _key_page(request, console, key, form=form, status=done.status)
    return redirect(page)


# --- Webhook endpoints


def _webhooks_page(
    request: HttpRequest, console: ConsoleContext, *, form: EndpointCreateForm | None = None,
    status: int = 200,
) -> HttpResponse:
    return render(
        request,
        "console/developer_webhooks.html",
        {
            "console": console,
            "endpoints": reads.endpoints(tenant=console.tenant),
            "form": form or EndpointCreateForm(initial=_key()),
        },
        status=status,
    )


@console_page(MANAGE)
def webhooks(request: HttpRequest, console: ConsoleContext) -> HttpResponse:
    return _webhooks_page(request, console)


@require_POST
@console_page(MANAGE)
def webhook_create(request: HttpRequest, console: ConsoleContext) -> HttpResponse:
    form = EndpointCreateForm(request.POST)
    return _create_with_secret(
        request,
        console,
        form,
        page=_webhooks_page,
        action="webhook.create",
        run=lambda new: actions.endpoint_create(
            actor=console.actor,
            url=form.cleaned_data["url"],
            event_types=list(form.cleaned_data["event_types"]),
            description=form.cleaned_data["description"].strip(),
            into=new,
        ),
        kind=WEBHOOK_SECRET,
        shown_at=lambda endpoint_id: redirect(
            "console:developer_webhook", endpoint_id=endpoint_id
        ),
    )


def _webhook_page(
    request: HttpRequest, console: ConsoleContext, endpoint: Endpoint, *, status: int = 200,
    **forms: Any,
) -> HttpResponse:
    filters = DeliveryFilterForm(request.GET)
    chosen = filters.cleaned_data if filters.is_valid() else {}
    page: Page[Delivery] = _page_or_first(
        lambda cursor: reads.deliveries_page(
            endpoint=endpoint,
            status=chosen.get("status") or "",
            event_type=chosen.get("event_type") or "",
            cursor=cursor,
        ),
        request.GET.get("cursor") or None,
    )
    query = request.GET.copy()
    query.pop("cursor", None)
    context: dict[str, Any] = {
        "console": console,
        "endpoint": endpoint,
        "header_names": reads.endpoint_header_names(endpoint),
        "secret": take_once(request, kind=WEBHOOK_SECRET, object_id=str(endpoint.pk)),
        "filters": filters,
        "filtered": any(chosen.values()),
        "query": query.urlencode(),
        "page": page,
        "types_form": EndpointTypesForm(
            initial={**_key(), "event_types": list(endpoint.event_types)}
        ),
        "active_form": EndpointActiveForm(
            initial={**_key(), "is_active": not endpoint.is_active}
        ),
        "rotate_form": EndpointConfirmedForm(initial=_key()),
        "test_form": EndpointTestForm(initial=_key()),
    }
    context.update(forms)
    return render(request, "console/developer_webhook.html", context, status=status)


def _endpoint(console: ConsoleContext, endpoint_id: str) -> Endpoint:
    return reads.endpoint_get(tenant=console.tenant, endpoint_id=endpoint_id)


def _webhook_url(endpoint: Endpoint) -> str:
    return reverse("console:developer_webhook", kwargs={"endpoint_id": str(endpoint.pk)})


@console_page(MANAGE)
def webhook_detail(request: HttpRequest, console: ConsoleContext, endpoint_id: str) -> HttpResponse:
    return _webhook_page(request, console, _endpoint(console, endpoint_id))


@require_POST
@console_page(MANAGE)
def webhook_event_types(
    request: HttpRequest, console: ConsoleContext, endpoint_id: str
) -> HttpResponse:
    endpoint = _endpoint(console, endpoint_id)
    form = EndpointTypesForm(request.POST)
    if not form.is_valid():
        return _webhook_page(request, console, endpoint, status=422, types_form=form)
    done = act(
        request,
        console,
        form,
        action="webhook.update",
        run=lambda: actions.endpoint_event_types(
            actor=console.actor,
            endpoint=endpoint,
            event_types=list(form.cleaned_data["event_types"]),
        ),
    )
    if done.submitted is None:
        return _webhook_page(request, console, endpoint, status=done.status, types_form=form)
    return redirect(_webhook_url(endpoint))


@require_POST
@console_page(MANAGE)
def webhook_active(request: HttpRequest, console: ConsoleContext, endpoint_id: str) -> HttpResponse:
    endpoint = _endpoint(console, endpoint_id)
    form = EndpointActiveForm(request.POST)
    if not form.is_valid():
        return _webhook_page(request, console, endpoint, status=422, active_form=form)
    active = bool(form.cleaned_data["is_active"])
    if not active and not form.cleaned_data["confirmed"]:
        return confirmation(
            request,
            console,
            form,
            title=f"Disable {endpoint.url}?",
            consequences=[
                "No event is sent to it while it is disabled, and events that happen meanwhile "
                "are not queued for it.",
                "Deliveries already waiting for a retry are not sent.",
                "Enabling it again later resumes deliveries of new events.",
            ],
            button="Disable the endpoint",
            back=_webhook_url(endpoint),
        )
    done = act(
        request,
        console,
        form,
        action="webhook.enable" if active else "webhook.disable",
        run=lambda: actions.endpoint_set_active(
            actor=console.actor, endpoint=endpoint, active=active
        ),
    )
    if done.submitted is None:
        return _webhook_page(request, console, endpoint, status=done.status, active_form=form)
    return redirect(_webhook_url(endpoint))


@require_POST
@console_page(MANAGE)
def webhook_rotate(request: HttpRequest, console: ConsoleContext, endpoint_id: str) -> HttpResponse:
    endpoint = _endpoint(console, endpoint_id)
    form = EndpointConfirmedForm(request.POST)
    if not form.is_valid():
        return _webhook_page(request, console, endpoint, status=422, rotate_form=form)
    if not form.cleaned_data["confirmed"]:
        return confirmation(
            request,
            console,
            form,
            title=f"Rotate the signing secret of {endpoint.url}?",
            consequences=[
                "A new secret is made and shown once, on the next page.",
                "For 24 hours every delivery carries two signatures, the new and the old: "
                "switch your receiver to the new secret within that time.",
                "After 24 hours the old secret no longer signs anything.",
            ],
            button="Rotate the secret",
            back=_webhook_url(endpoint),
            danger=False,
        )
    new = actions.NewSecret()
    done = act(
        request,
        console,
        form,
        action="webhook.rotate",
        run=lambda: actions.endpoint_rotate(actor=console.actor, endpoint=endpoint, into=new),
    )
    if done.submitted is None:
        return _webhook_page(request, console, endpoint, status=done.status, rotate_form=form)
    if not done.submitted.replayed:
        keep_once(request, kind=WEBHOOK_SECRET, object_id=new.object_id, secret=new.secret)
    return redirect(_webhook_url(endpoint))


@require_POST
@console_page(MANAGE)
def webhook_test(request: HttpRequest, console: ConsoleContext, endpoint_id: str) -> HttpResponse:
    endpoint = _endpoint(console, endpoint_id)
    form = EndpointTestForm(request.POST)
    if not form.is_valid():
        return _webhook_page(request, console, endpoint, status=422, test_form=form)
    done = act(
        request,
        console,
        form,
        action="webhook.test",
        run=lambda: actions.endpoint_test(actor=console.actor, endpoint=endpoint),
    )
    if done.submitted is None:
        return _webhook_page(request, console, endpoint, status=done.status, test_form=form)
    return redirect(_webhook_url(endpoint))


# --- The delivery log


def _delivery_page(
    request: HttpRequest, console: ConsoleContext, delivery: Delivery, *,
    form: RedeliverForm | None = None, status: int = 200,
) -> HttpResponse:
    return render(
        request,
        "console/developer_delivery.html",
        {
            "console": console,
            "delivery": delivery,
            "endpoint": delivery.endpoint,
            "attempts": reads.attempt_views(delivery),
            "body": reads.delivery_body(delivery, console.tenant),
            "redeliver_form": form or RedeliverForm(initial=_key()),
        },
        status=status,
    )


@console_page(MANAGE)
def delivery_detail(
    request: HttpRequest, console: ConsoleContext, delivery_id: str
) -> HttpResponse:
    return _delivery_page(
        request, console, reads.delivery_get(tenant=console.tenant, delivery_id=delivery_id)
    )


@require_POST
@console_page(MANAGE)
def delivery_redeliver(
    request: HttpRequest, console: ConsoleContext, delivery_id: str
) -> HttpResponse:
    delivery = reads.delivery_get(tenant=console.tenant, delivery_id=delivery_id)
    form = RedeliverForm(request.POST)
    if not form.is_valid():
        return _delivery_page(request, console, delivery, form=form, status=422)
    done = act(
        request,
        console,
        form,
        action="delivery.redeliver",
        run=lambda: actions.delivery_redeliver(actor=console.actor, delivery=delivery),
    )
    if done.submitted is None:
        return _delivery_page(request, console, delivery, form=form, status=done.status)
    return redirect(_webhook_url(delivery.endpoint))
