"""The console's forms: what a page accepts, checked before any service runs.

Every form that acts carries `form_key`, the hidden idempotency key generated when the form was
rendered (`services.new_form_key`); `services.submitted` claims it with the action.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

from django import forms
from django.contrib.auth import authenticate
from django.contrib.auth.models import User
from django.core.validators import RegexValidator
from django.http import HttpRequest

from billable import clock
from billable.models import Offer
from billing_platform.console.models import Role
from billing_platform.core.errors import BillingError, ValidationFailed
from billing_platform.core.ratelimits import CONSOLE_LOGIN, LoginThrottle

FORM_KEY = RegexValidator(r"\A[A-Za-z0-9_-]{16,64}\Z", "This form is out of date: reload the page.")


def show_error(form: forms.Form, error: BillingError) -> None:
    """Put a service's refusal on the form, in plain words, beside the field it names."""
    field = None
    if isinstance(error, ValidationFailed):
        named = [path[0] for path, _msg in error.fields if path]
        named += [(item.get("loc") or [""])[-1] for item in error.extra.get("errors", [])]
        field = next((name for name in named if name in form.fields), None)
    form.add_error(field if isinstance(field, str) else None, error.detail)


class LoginForm(forms.Form):
    """Email and password; too many failures for the account or the address lock it a while."""

    email = forms.EmailField(max_length=254, widget=forms.EmailInput(attrs={"autofocus": True}))
    password = forms.CharField(strip=False, widget=forms.PasswordInput)

    def __init__(self, request: HttpRequest, *args: Any, **kwargs: Any) -> None:
        self.request = request
        self.user: User | None = None
        super().__init__(*args, **kwargs)

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        email, password = data.get("email"), data.get("password")
        if not email or not password:
            return data
        throttle = LoginThrottle(self.request, email, group=CONSOLE_LOGIN)
        locked_for = throttle.locked_for()
        if locked_for:
            raise forms.ValidationError(
                "Too many failed sign-ins for this account or from this address. "
                f"Try again in {math.ceil(locked_for / 60)} minute(s).",
                code="too_many_attempts",
            )
        user = authenticate(self.request, username=email.strip().lower(), password=password)
        if user is None:
            throttle.failed()
            raise forms.ValidationError(
                "That email and password do not match an account.", code="invalid_login"
            )
        self.user = user
        return data


class TokenForm(forms.Form):
    token = forms.RegexField(
        regex=r"\A\d{6}\Z",
        max_length=6,
        label="Code",
        error_messages={"invalid": "Enter the 6 digits your authenticator app shows."},
        widget=forms.TextInput(
            attrs={"autocomplete": "one-time-code", "inputmode": "numeric", "autofocus": True}
        ),
    )


class SearchForm(forms.Form):
    q = forms.CharField(
        required=False,
        max_length=255,
        label="Search",
        widget=forms.TextInput(
            attrs={"placeholder": "Customer id, or an external id (or its beginning)"}
        ),
    )


class ActionForm(forms.Form):
    form_key = forms.CharField(widget=forms.HiddenInput, validators=[FORM_KEY])


class GrantForm(ActionForm):
    offer = forms.ChoiceField(label="Offer")
    reason = forms.CharField(
        max_length=1000,
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text="Why: kept with the grant, in the ledger and in the audit log.",
    )
    expires_at = forms.DateTimeField(
        required=False,
        label="Expires (UTC, optional)",
        help_text="Leave empty for the offer's own periods.",
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
        input_formats=["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%d"],
    )

    def __init__(self, *args: Any, offers: list[Offer], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        choices = [(offer.sku, f"{offer.sku} · {offer.name}") for offer in offers]
        self.fields["offer"].choices = choices  # type: ignore[attr-defined]

    def clean_reason(self) -> str:
        reason: str = self.cleaned_data["reason"].strip()
        if not reason:
            raise forms.ValidationError("Say why.")
        return reason

    def clean_expires_at(self) -> datetime | None:
        at: datetime | None = self.cleaned_data.get("expires_at")
        if at is not None and at <= clock.now():
            raise forms.ValidationError("The expiry must be in the future.")
        return at


class InviteForm(ActionForm):
    email = forms.EmailField(max_length=254)
    role = forms.ChoiceField(choices=Role.choices, initial=Role.VIEWER)


class RoleForm(ActionForm):
    """A member's new role (the Team page, one form a member)."""

    role = forms.ChoiceField(choices=Role.choices)


class AcceptForm(forms.Form):
    """The new account's password (an existing account accepts by signing in instead)."""

    password = forms.CharField(strip=False, widget=forms.PasswordInput, label="Choose a password")
    password_again = forms.CharField(strip=False, widget=forms.PasswordInput, label="Again")

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if data.get("password") and data.get("password") != data.get("password_again"):
            self.add_error("password_again", "The two passwords differ.")
        return data
