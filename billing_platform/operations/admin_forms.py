"""The forms of the operators' admin: onboarding, a tenant's fields and settings, keys, deletion.

A tenant's settings are one typed field each, built by `billable.setting_forms` from the schema
`PATCH /api/v1/settings` reads (the console's settings page uses the same fields); the form
validates them with that schema, so the admin saves only what the API accepts and refuses the
rest with the API's own message.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django import forms
from django.core.exceptions import ValidationError
from django.utils import timezone
from django.utils.html import escape

from billable.setting_forms import add_setting_fields, setting_changes
from billing_platform.core import errors
from tenants import services
from tenants.models import KeyScope, Tenant, TenantStatus

SETTABLE_STATUSES = [
    (TenantStatus.ACTIVE.value, TenantStatus.ACTIVE.label),
    (TenantStatus.SUSPENDED.value, TenantStatus.SUSPENDED.label),
]


def add_billing_error(form: forms.BaseForm, exc: errors.BillingError) -> None:
    """Attach a service error to the form field it concerns, else to the whole form."""
    field: str | None = None
    if isinstance(exc, errors.InvalidSlug | errors.SlugTaken):
        field = "slug"
    elif isinstance(exc, errors.ValidationFailed):
        named = [str(path[-1]) for path, _msg in exc.fields if path]
        field = next((name for name in named if name in form.fields), None)
    form.add_error(field, exc.detail)


# --- Tenants.


class TenantOnboardForm(forms.Form):
    name = forms.CharField(max_length=200)
    slug = forms.CharField(
        max_length=40,
        # Escaped: the admin renders help texts as HTML, where "<slug>" would vanish as a tag.
        help_text=escape(
            "3–40 characters of a-z, 0-9 and '-', starting with a letter. "
            "The schema is t_<slug>, '-' written '_' (acme-eu: t_acme_eu)."
        ),
    )
    rate_limit = forms.CharField(
        max_length=32,
        required=False,
        help_text="N/s, N/m, N/h, N/d or 0 (unlimited). Empty means 600/m.",
    )
    demo_catalog = forms.BooleanField(
        required=False, label="Install the demo catalog", initial=False
    )


class TenantChangeForm(forms.ModelForm):
    """A tenant's name, status and rate limit, and one field per setting."""

    class Meta:
        model = Tenant
        fields = ("name", "status", "rate_limit")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if "status" in self.fields:
            self.fields["status"].choices = SETTABLE_STATUSES  # type: ignore[attr-defined]
        add_setting_fields(self, self.instance.merged_settings if self.instance.pk else {})
        self.settings_changes: dict[str, Any] = {}

    def clean_rate_limit(self) -> str:
        rate_limit: str = self.cleaned_data["rate_limit"]
        try:
            return services.validate_rate_limit(rate_limit)
        except errors.BillingError as exc:
            raise ValidationError(exc.detail) from exc

    def clean_status(self) -> str:
        status: str = self.cleaned_data["status"]
        if (
            status == TenantStatus.ACTIVE
            and self.instance.deletion_requested_at is not None
            and "status" in self.changed_data
        ):
            raise ValidationError(errors.TenantDeleting.title)
        return status

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        self.settings_changes = setting_changes(self, cleaned)
        return cleaned


# --- Keys.


class ApiKeyCreateForm(forms.Form):
    name = forms.CharField(max_length=100, help_text="Say who or what will use it.")
    scopes = forms.MultipleChoiceField(
        choices=KeyScope.choices,
        widget=forms.CheckboxSelectMultiple,
        help_text="billing:read reads; billing:write consumes, orders and holds; billing:grant "
        "grants and adjusts; admin manages keys, webhooks, the catalog and the settings.",
    )
    expires_at = forms.DateTimeField(
        required=False,
        label="Expires at (UTC)",
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
        help_text="Empty: the key never expires.",
    )

    def clean_expires_at(self) -> datetime | None:
        expires_at: datetime | None = self.cleaned_data["expires_at"]
        if expires_at is not None and expires_at <= timezone.now():
            raise ValidationError("A key's expiry must be in the future.")
        return expires_at


# --- Deletion.


class TenantDeleteForm(forms.Form):
    confirm = forms.CharField(max_length=64, label="Type the tenant's slug to confirm", strip=True)

    def __init__(self, *args: Any, tenant: Tenant, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.tenant = tenant

    def clean_confirm(self) -> str:
        confirm: str = self.cleaned_data["confirm"]
        if confirm != self.tenant.slug:
            raise ValidationError(
                f"Type {self.tenant.slug} exactly: nothing is deleted without it."
            )
        return confirm
