"""The settings pages' forms: the tenant's settings, the audit log's filters, and the reason an
operator gives to open a support session.

The settings fields are the operators' admin's (`billable.setting_forms`, built from the schema
`PATCH /api/v1/settings` reads), and are checked by that schema: the same refusals as the API's,
each shown beside its field.
"""

from __future__ import annotations

from typing import Any

from django import forms

from billable.setting_forms import add_setting_fields, setting_changes
from billing_platform.console.forms import ActionForm


class SettingsForm(ActionForm):
    """One typed field per setting, showing the tenant's current values."""

    def __init__(self, *args: Any, current: dict[str, Any], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        add_setting_fields(self, current)
        self.changes: dict[str, Any] = {}

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        self.changes = setting_changes(self, cleaned)
        return cleaned


class AuditFilterForm(forms.Form):
    action = forms.CharField(
        required=False,
        max_length=64,
        widget=forms.TextInput(attrs={"placeholder": "customer.grant"}),
    )
    actor = forms.CharField(
        required=False,
        max_length=254,
        label="Person",
        widget=forms.TextInput(
            attrs={"placeholder": "email or operator:<id>", "list": "audit-people"}
        ),
    )
    target = forms.CharField(
        required=False,
        max_length=255,
        widget=forms.TextInput(attrs={"placeholder": "customer:<id>"}),
    )
    created_from = forms.DateField(
        required=False, label="From", widget=forms.DateInput(attrs={"type": "date"})
    )
    created_to = forms.DateField(
        required=False, label="to (inclusive)", widget=forms.DateInput(attrs={"type": "date"})
    )

    def clean_actor(self) -> str:
        # Members are recorded by their email, which the console stores lowercased.
        actor: str = self.cleaned_data["actor"]
        return actor.lower()


class SupportStartForm(ActionForm):
    reason = forms.CharField(
        max_length=1000,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="Why you open this tenant's console: the tenant reads it in its audit log.",
        error_messages={"required": "Say why."},
    )
