"""The developers pages' forms: API keys, webhook endpoints, the delivery log's filters.

What a field accepts is what the API's schema accepts (`tenants.schemas.ApiKeyCreateIn`,
`webhooks.schemas.EndpointIn`); the rules only the services know (a URL that resolves to a
public address, the number of keys or endpoints) come back from them, in their words.
"""

from __future__ import annotations

from datetime import UTC
from typing import Any

from django import forms

from billable import clock
from billing_platform.console.billing_forms import DATETIME_FORMATS, ConfirmedForm
from billing_platform.console.forms import ActionForm
from billing_platform.webhooks.events import EVENT_TYPES
from billing_platform.webhooks.models import DeliveryStatus
from tenants.models import ALL_SCOPES

SCOPE_HELP = {
    "billing:read": "read customers, balances, the catalog and orders",
    "billing:write": "consume, hold, create orders and customers",
    "billing:grant": "grant offers and trials",
    "admin": "keys, webhooks and the catalog",
}


def _event_type_choices() -> list[tuple[str, str]]:
    return [(name, name) for name in EVENT_TYPES]


class KeyCreateForm(ActionForm):
    name = forms.CharField(max_length=100, help_text="What uses it, e.g. “n8n production”.")
    scopes = forms.MultipleChoiceField(
        choices=[(scope, f"{scope} — {SCOPE_HELP.get(scope, '')}") for scope in ALL_SCOPES],
        widget=forms.CheckboxSelectMultiple,
        error_messages={"required": "Choose at least one scope."},
    )
    expires_at = forms.DateTimeField(
        required=False,
        input_formats=DATETIME_FORMATS,
        label="Expires (UTC, optional)",
        help_text="Leave empty for a key that does not expire.",
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
    )

    def clean_expires_at(self) -> Any:
        value = self.cleaned_data.get("expires_at")
        if value is None:
            return None
        value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        if value <= clock.now():
            raise forms.ValidationError("Choose a time in the future.")
        return value


class KeyRevokeForm(ConfirmedForm):
    pass


class EndpointCreateForm(ActionForm):
    url = forms.CharField(
        max_length=2000,
        label="URL",
        help_text="http:// or https://, a public address (an n8n Webhook node's production URL).",
        widget=forms.URLInput(attrs={"placeholder": "https://example.com/billable-webhook"}),
    )
    description = forms.CharField(required=False, max_length=500)
    event_types = forms.MultipleChoiceField(
        required=False,
        choices=_event_type_choices,
        widget=forms.CheckboxSelectMultiple,
        label="Event types",
        help_text="None chosen: every event type, those added later included.",
    )

    def clean_url(self) -> str:
        return str(self.cleaned_data["url"]).strip()


class EndpointTypesForm(ActionForm):
    event_types = forms.MultipleChoiceField(
        required=False,
        choices=_event_type_choices,
        widget=forms.CheckboxSelectMultiple,
        label="Event types",
        help_text="None chosen: every event type.",
    )


class EndpointActiveForm(ConfirmedForm):
    is_active = forms.BooleanField(required=False, widget=forms.HiddenInput)


class EndpointConfirmedForm(ConfirmedForm):
    """Rotating a secret: shown once more before it is done."""


class EndpointTestForm(ActionForm):
    pass


class RedeliverForm(ActionForm):
    pass


class DeliveryFilterForm(forms.Form):
    status = forms.ChoiceField(
        required=False, choices=[("", "any status"), *DeliveryStatus.choices]
    )
    event_type = forms.ChoiceField(
        required=False,
        label="Event type",
        choices=lambda: [("", "any type"), *_event_type_choices()],
    )
