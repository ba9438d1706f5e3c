"""What every action of the catalog, orders and corrections pages does alike: ask for a
confirmation, run once through `services.submitted`, and tell the outcome in words."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from django import forms
from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from billing_platform.console import services
from billing_platform.console.access import ConsoleContext
from billing_platform.console.forms import show_error
from billing_platform.core.errors import BillingError


@dataclass(frozen=True)
class Done:
    """An action's result: `submitted` (None when refused) and the answer's status."""

    submitted: services.Submitted | None
    status: int = 200


def act(
    request: HttpRequest,
    console: ConsoleContext,
    form: forms.Form,
    *,
    action: str,
    run: Callable[[], services.Outcome],
) -> Done:
    """Run `run` once for the form's key, with its audit entry; a refusal goes on the form.

    On success the outcome is queued as a message ("already sent" for a repeat).
    """
    try:
        done = services.submitted(
            actor=console.actor, key=form.cleaned_data["form_key"], action=action, run=run
        )
    except BillingError as exc:
        show_error(form, exc)
        return Done(submitted=None, status=exc.status)
    if done.replayed:
        messages.info(
            request, f"This form was already sent; nothing more was done. {done.outcome.message}"
        )
    else:
        messages.success(request, done.outcome.message)
    return Done(submitted=done)


def confirmation(
    request: HttpRequest,
    console: ConsoleContext,
    form: forms.Form,
    *,
    title: str,
    consequences: list[str],
    button: str,
    back: str,
    danger: bool = True,
) -> HttpResponse:
    """The page that shows what an action will do and sends the same form once more, confirmed
    (its fields hidden, its form key unchanged: confirming twice still applies once)."""
    return render(
        request,
        "console/confirm.html",
        {
            "console": console,
            "form": form,
            "title": title,
            "consequences": consequences,
            "button": button,
            "back": back,
            "danger": danger,
        },
    )
