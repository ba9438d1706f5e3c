"""The forms of the operators' admin: onboarding, a tenant's fields and settings, keys, deletion.

A tenant's settings are one typed field each, built from `billable.schemas.SettingsPatch`, the
schema `PATCH /api/v1/settings` reads; the form validates them with that schema, so the admin
saves only what the API accepts and refuses the rest with the API's own message.
"""

from __future__ import annotations

import typing
from datetime import datetime
from typing import Any

from django import forms
from django.core.exceptions import ValidationError
from django.utils import timezone
from django.utils.html import escape
from pydantic import ValidationError as SchemaError
from pydantic.fields import FieldInfo

from billable.schemas import SettingsPatch
from billing_platform.core import errors
from tenants import services
from tenants.models import KeyScope, Tenant, TenantStatus

SETTABLE_STATUSES = [
    (TenantStatus.ACTIVE.value, TenantStatus.ACTIVE.label),
    (TenantStatus.SUSPENDED.value, TenantStatus.SUSPENDED.label),
]

# What each setting does, as docs/api.md says it ("Settings"). The admin renders help texts as
# HTML, so each is escaped where its field is made.
SETTING_HELP: dict[str, str] = {
    "low_balance_threshold": "Units at or below which a spend sends quota.low, for the features "
    "no active alert rule names. 0 turns it off.",
    "idempotency_retention_days": "Days an idempotency key and its answer are kept.",
    "referral_reward_sku": "Offer granted to the referrer on the referee's first paid order. "
    "Empty: none.",
    "referee_reward_sku": "Offer granted to the referee then. Empty: none.",
    "public_catalog": "Publish the active offers at /api/v1/public/<slug>/catalog.",
    "subscription_grace_days": "Days a subscription stays past_due after its paid period "
    "before it expires.",
    "subscription_renewal_notice_days": "Days before a paid period ends that its renewal order "
    "is made (subscription.renewal_due).",
    "referral_require_known_referrer": "Refuse a referral whose referrer nobody holds "
    "(422 unknown_referrer) instead of creating that customer.",
}
SETTING_NAMES: tuple[str, ...] = tuple(SettingsPatch.model_fields)


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


def _setting_field(name: str, info: FieldInfo) -> forms.Field:
    """A form field for one setting: the type from the schema, the limits left to the schema."""
    kinds = set(typing.get_args(info.annotation)) - {type(None)}
    help_text = SETTING_HELP.get(name, "")
    label = name.replace("_", " ").capitalize().replace(" sku", " SKU")
    if kinds == {bool}:
        return forms.BooleanField(required=False, label=label, help_text=escape(help_text))
    if kinds == {int}:
        low = next((m.ge for m in info.metadata if hasattr(m, "ge")), None)
        high = next((m.le for m in info.metadata if hasattr(m, "le")), None)
        if low is not None and high is not None:
            help_text = f"{help_text} From {low} to {high}.".strip()
        # No min/max here: the schema checks the range and words the refusal as the API does.
        return forms.IntegerField(label=label, help_text=escape(help_text))
    return forms.CharField(required=False, label=label, help_text=escape(help_text))


class TenantChangeForm(forms.ModelForm):
    """A tenant's name, status and rate limit, and one field per setting."""

    class Meta:
        model = Tenant
        fields = ("name", "status", "rate_limit")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if "status" in self.fields:
            self.fields["status"].choices = SETTABLE_STATUSES  # type: ignore[attr-defined]
        current = self.instance.merged_settings if self.instance.pk else {}
        for name, info in SettingsPatch.model_fields.items():
            self.fields[name] = _setting_field(name, info)
            self.fields[name].initial = current.get(name)
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
        given = {
            name: cleaned[name] if cleaned[name] != "" else None
            for name in SETTING_NAMES
            if name in cleaned
        }
        try:
            accepted = SettingsPatch.model_validate(given)
        except SchemaError as exc:
            for error in exc.errors():
                name = str(error["loc"][0]) if error["loc"] else None
                self.add_error(name if name in self.fields else None, error["msg"])
            return cleaned
        changed = set(self.changed_data)
        self.settings_changes = {name: getattr(accepted, name) for name in given if name in changed}
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
