"""A tenant's settings as typed form fields, for the operators' admin and the tenant console.

The fields are built from `billable.schemas.SettingsPatch`, the schema `PATCH /api/v1/settings`
reads, and a form's values are checked with that schema, so both forms save only what the API
accepts and refuse the rest with the API's own message, beside the field it names.
"""

from __future__ import annotations

import typing
from typing import Any

from django import forms
from django.utils.html import escape
from pydantic import ValidationError as SchemaError
from pydantic.fields import FieldInfo

from billable.schemas import SettingsPatch

# What each setting does, as docs/api.md says it ("Settings"). The admin renders help texts as
# HTML, so each is escaped where its field is made (a safe string: templates show it as is).
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


def setting_label(name: str) -> str:
    return name.replace("_", " ").capitalize().replace(" sku", " SKU")


def setting_field(name: str, info: FieldInfo) -> forms.Field:
    """A form field for one setting: the type from the schema, the limits left to the schema."""
    kinds = set(typing.get_args(info.annotation)) - {type(None)}
    help_text = SETTING_HELP.get(name, "")
    label = setting_label(name)
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


def add_setting_fields(form: forms.BaseForm, current: dict[str, Any]) -> None:
    """Add one field per setting to `form`, each showing its `current` value."""
    for name, info in SettingsPatch.model_fields.items():
        form.fields[name] = setting_field(name, info)
        form.fields[name].initial = current.get(name)


def setting_changes(form: forms.BaseForm, cleaned: dict[str, Any]) -> dict[str, Any]:
    """The settings `form` changed, as the schema accepts them (an empty text clears a SKU).

    A value the schema refuses is put on the form beside its field, in the schema's words, and
    then nothing is returned: a form applies all its changes or none.
    """
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
            form.add_error(name if name in form.fields else None, error["msg"])
        return {}
    changed = set(form.changed_data)
    return {name: getattr(accepted, name) for name in given if name in changed}
