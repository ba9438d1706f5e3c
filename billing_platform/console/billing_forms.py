"""The forms of the catalog and orders pages and of a customer's corrections.

The catalog's JSON fields are edited as rows, never as raw JSON: a product's features one name a
row, its credit costs a feature and a number a row, metadata a name, a kind (text, number, yes/no,
or JSON for a nested value) and a value a row. Each row form checks what the API's schema checks
(`billable.schemas`), so a value the API would refuse with 422 is refused here beside its row;
what only the engine knows (a key taken, a product in use) comes back from its service.

A form that asks for a confirmation carries `confirmed`: sent without it, the view shows what
will happen and a button that sends the same fields (and the same form key) again with it.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from django import forms
from django.core.validators import RegexValidator
from django.forms import formset_factory

from billable import clock
from billable.catalog_keys import FEATURE_RE, KEY_RE
from billable.metadata import MAX_METADATA_BYTES, metadata_bytes
from billable.models import (
    EntitlementType,
    OrderStatus,
    PeriodUnit,
    PlanInterval,
    Product,
    ProductType,
    UpgradeAllowance,
)
from billable.services.catalog import MAX_CREDIT_COST, ItemSpec
from billable.services.plans import MAX_ENTITLEMENTS, MAX_TRIAL_DAYS, EntitlementSpec
from billing_platform.console.forms import ActionForm

KEY = RegexValidator(KEY_RE, "1–64 letters, digits, '_', '-' or '.'.")
FEATURE = RegexValidator(FEATURE_RE, "1–64 letters, digits, '_', '-' or '.'.")
# Rows offered beyond what a form holds, and added by "More rows".
EXTRA_ROWS = 3
MAX_FEATURES = 100
MAX_ITEMS = 50
MAX_METADATA_ROWS = 200
DATETIME_FORMATS = ["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%d"]


def _required_text(value: str, message: str = "Say why.") -> str:
    text = value.strip()
    if not text:
        raise forms.ValidationError(message)
    return text


class ConfirmedForm(ActionForm):
    """An action that is shown once more, with what it will do, before it is done."""

    confirmed = forms.BooleanField(required=False, widget=forms.HiddenInput)


# --- Rows of the JSON fields


class FeatureRow(forms.Form):
    name = forms.CharField(required=False, max_length=64, validators=[FEATURE], label="Feature")


class CostRow(forms.Form):
    feature = forms.CharField(required=False, max_length=64, validators=[FEATURE])
    credits = forms.IntegerField(required=False, min_value=1, max_value=MAX_CREDIT_COST)

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if bool(data.get("feature")) != (data.get("credits") is not None) and not self.errors:
            raise forms.ValidationError("Give both the feature and its cost in credits.")
        return data


KINDS = [("text", "text"), ("number", "number"), ("boolean", "yes/no"), ("json", "JSON")]
TRUE_WORDS = {"true", "yes", "y", "1", "on"}
FALSE_WORDS = {"false", "no", "n", "0", "off"}


def metadata_rows(metadata: dict[str, Any], *, skip: tuple[str, ...] = ()) -> list[dict[str, str]]:
    """A metadata object as the rows of its form (nested values as JSON text)."""
    rows = []
    for name, value in metadata.items():
        if name in skip:
            continue
        if isinstance(value, bool):
            rows.append({"key": name, "kind": "boolean", "value": "yes" if value else "no"})
        elif isinstance(value, str):
            rows.append({"key": name, "kind": "text", "value": value})
        elif isinstance(value, int | float):
            rows.append({"key": name, "kind": "number", "value": json.dumps(value)})
        else:
            rows.append({"key": name, "kind": "json", "value": json.dumps(value)})
    return rows


class MetadataRow(forms.Form):
    key = forms.CharField(required=False, max_length=255, label="Name")
    kind = forms.ChoiceField(choices=KINDS, initial="text")
    value = forms.CharField(required=False, max_length=MAX_METADATA_BYTES, strip=False)

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if self.errors:
            return data
        key = data.get("key", "").strip()
        raw = data.get("value", "")
        if not key:
            if raw.strip():
                raise forms.ValidationError("Name this value.")
            return data
        data["key"] = key
        data["parsed"] = self.parse(data.get("kind", "text"), raw)
        return data

    @staticmethod
    def parse(kind: str, raw: str) -> Any:
        """A value typed as `kind` (text, number, yes/no, JSON); ValidationError in words."""
        if kind == "text":
            return raw
        text = raw.strip()
        if kind == "boolean":
            if text.lower() in TRUE_WORDS:
                return True
            if text.lower() in FALSE_WORDS:
                return False
            raise forms.ValidationError("Write yes or no.")
        try:
            value = json.loads(text, parse_constant=_no_constant)
        except (ValueError, RecursionError) as exc:
            if kind == "number":
                raise forms.ValidationError("Write a number, such as 3 or 2.5.") from exc
            raise forms.ValidationError(f"This is not valid JSON: {exc}.") from exc
        if kind == "number" and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise forms.ValidationError("Write a number, such as 3 or 2.5.")
        return value


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


def _product_choices(products: list[Product]) -> list[tuple[str, str]]:
    return [("", "—")] + [
        (p.key, f"{p.key} · {p.name}{'' if p.is_active else ' (inactive)'}") for p in products
    ]


class ItemRow(forms.Form):
    product = forms.ChoiceField(required=False)
    quantity = forms.IntegerField(required=False, min_value=1, max_value=10**12, initial=1)
    period_unit = forms.ChoiceField(choices=PeriodUnit.choices, initial=PeriodUnit.FOREVER)
    period_value = forms.IntegerField(required=False, min_value=0, max_value=100_000)

    def __init__(self, *args: Any, products: list[Product], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["product"].choices = _product_choices(products)  # type: ignore[attr-defined]

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if self.errors or not data.get("product"):
            return data
        if data.get("quantity") is None:
            self.add_error("quantity", "How many?")
        unit, value = data.get("period_unit"), data.get("period_value")
        if unit != PeriodUnit.FOREVER and not value:
            self.add_error("period_value", f"How many {unit}?")
        return data


FeatureRows = formset_factory(FeatureRow, extra=EXTRA_ROWS, max_num=MAX_FEATURES, validate_max=True)
CostRows = formset_factory(CostRow, extra=EXTRA_ROWS, max_num=MAX_FEATURES, validate_max=True)
MetadataRows = formset_factory(
    MetadataRow, extra=EXTRA_ROWS, max_num=MAX_METADATA_ROWS, validate_max=True
)
ItemRows = formset_factory(ItemRow, extra=EXTRA_ROWS, max_num=MAX_ITEMS, validate_max=True)


def with_more_rows(data: Any, prefix: str, more: int = EXTRA_ROWS) -> Any:
    """A copy of the sent form data with `more` blank rows in the formset `prefix`."""
    copied = data.copy()
    key = f"{prefix}-TOTAL_FORMS"
    try:
        total = int(copied.get(key, 0))
    except ValueError:
        total = 0
    copied[key] = str(max(0, total) + more)
    return copied


# --- The main forms of the catalog


class _CatalogForm(ActionForm):
    """A product, offer or plan: its key field is asked only when it is created."""

    key_field = "key"

    def __init__(self, *args: Any, editing: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if editing:
            del self.fields[self.key_field]

    def clean_name(self) -> str:
        return _required_text(self.cleaned_data["name"], "Name it.")

    def clean_currency(self) -> str:
        return _required_text(self.cleaned_data["currency"], "Which currency?").upper()


class ProductForm(_CatalogForm):
    key = forms.CharField(max_length=64, validators=[KEY], help_text="Shown upper-case.")
    name = forms.CharField(max_length=200)
    product_type = forms.ChoiceField(
        choices=ProductType.choices,
        label="Type",
        help_text="quantity: units that are used up; period: access for a time; unlimited.",
    )
    description = forms.CharField(
        required=False, max_length=5000, widget=forms.Textarea(attrs={"rows": 2})
    )
    is_currency = forms.BooleanField(
        required=False,
        label="A currency",
        help_text="Its units can pay for offers priced in it (coins, credits).",
    )



class OfferForm(_CatalogForm):
    key_field = "sku"

    sku = forms.CharField(
        max_length=64, validators=[KEY], label="SKU", help_text="Shown upper-case."
    )
    name = forms.CharField(max_length=200)
    price = forms.DecimalField(
        min_value=Decimal(0), max_digits=19, decimal_places=4, help_text="0 for a free offer."
    )
    currency = forms.CharField(
        max_length=64,
        help_text="An ISO 4217 code (USD), a declared currency, or a currency product's key.",
    )
    description = forms.CharField(
        required=False, max_length=5000, widget=forms.Textarea(attrs={"rows": 2})
    )



def features_of(rows: Any) -> list[str]:
    return [row.cleaned_data["name"] for row in rows if row.cleaned_data.get("name")]


def costs_of(rows: Any) -> tuple[dict[str, int], list[str]]:
    """The rows' credit costs and the features named twice (which the form refuses)."""
    costs: dict[str, int] = {}
    twice = []
    for row in rows:
        feature = row.cleaned_data.get("feature")
        if not feature:
            continue
        if feature.lower() in costs:
            twice.append(feature)
        costs[feature.lower()] = row.cleaned_data["credits"]
    return costs, twice


def metadata_of(rows: Any) -> tuple[dict[str, Any], list[str]]:
    """The rows' metadata object and the names given twice."""
    metadata: dict[str, Any] = {}
    twice = []
    for row in rows:
        key = row.cleaned_data.get("key")
        if not key:
            continue
        if key in metadata:
            twice.append(key)
        metadata[key] = row.cleaned_data["parsed"]
    return metadata, twice


def metadata_too_large(metadata: dict[str, Any]) -> str:
    """The API schema's refusal of a metadata object over 16 KiB, in words ("" when it fits)."""
    size = metadata_bytes(metadata)
    if size <= MAX_METADATA_BYTES:
        return ""
    return f"The metadata would be {size} bytes of JSON; the limit is {MAX_METADATA_BYTES}."


def items_of(rows: Any) -> list[ItemSpec]:
    return [
        ItemSpec(
            product=row.cleaned_data["product"],
            quantity=row.cleaned_data["quantity"],
            period_unit=row.cleaned_data["period_unit"],
            period_value=row.cleaned_data.get("period_value"),
        )
        for row in rows
        if row.cleaned_data.get("product")
    ]


# --- Plans


class PlanForm(_CatalogForm):
    """A plan: the fields that change in place (name, description, upgrade allowance) and its
    terms (interval, price, trial), which make a new version when they change."""

    key = forms.CharField(max_length=64, validators=[KEY], help_text="Shown upper-case.")
    name = forms.CharField(max_length=200)
    description = forms.CharField(
        required=False, max_length=5000, widget=forms.Textarea(attrs={"rows": 2})
    )
    price = forms.DecimalField(
        min_value=Decimal(0), max_digits=19, decimal_places=4, help_text="Per interval."
    )
    currency = forms.CharField(
        max_length=64,
        help_text="An ISO 4217 code (USD), a declared currency, or a currency product's key.",
    )
    interval_count = forms.IntegerField(min_value=1, max_value=100_000, initial=1, label="Every")
    interval_unit = forms.ChoiceField(
        choices=PlanInterval.choices, initial=PlanInterval.MONTHS, label="Interval"
    )
    trial_days = forms.IntegerField(
        min_value=0, max_value=MAX_TRIAL_DAYS, initial=0, label="Trial days"
    )
    upgrade_allowance = forms.ChoiceField(
        choices=UpgradeAllowance.choices,
        initial=UpgradeAllowance.PRORATED,
        label="Upgrade allowance",
        help_text="On a change to this plan: the rest of the period's units in proportion to "
        "the time left (prorated), or all of them (full).",
    )



ENTITLEMENT_TYPES = [
    ("", "—"),
    (EntitlementType.ALLOWANCE, "allowance"),
    (EntitlementType.ACCESS, "access"),
    (EntitlementType.VALUE, "value"),
]


class EntitlementRow(forms.Form):
    """One entitlement: an allowance (a quantity product, units per reset period, a rollover
    cap), access (a period or unlimited product) or a named value (text, number, yes/no, JSON).
    A row without a type is no entitlement."""

    entitlement_type = forms.ChoiceField(required=False, choices=ENTITLEMENT_TYPES, label="Type")
    product = forms.ChoiceField(required=False)
    amount = forms.IntegerField(required=False, min_value=1, max_value=10**12, label="Units")
    reset_count = forms.IntegerField(
        required=False, min_value=1, max_value=100_000, label="Reset every"
    )
    reset_unit = forms.ChoiceField(
        required=False, choices=[("", "—"), *PlanInterval.choices], label="Unit"
    )
    rollover_cap = forms.IntegerField(
        required=False, min_value=0, max_value=10**12, label="Rollover cap"
    )
    name = forms.CharField(required=False, max_length=64, validators=[FEATURE], label="Value name")
    kind = forms.ChoiceField(choices=KINDS, initial="text", label="Kind")
    value = forms.CharField(required=False, max_length=MAX_METADATA_BYTES, strip=False)

    def __init__(self, *args: Any, products: list[Product], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["product"].choices = _product_choices(products)  # type: ignore[attr-defined]

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        kind = data.get("entitlement_type")
        if self.errors or not kind:
            if not kind and not self.errors and (data.get("product") or data.get("name")):
                self.add_error("entitlement_type", "Choose what this row gives.")
            return data
        if kind == EntitlementType.VALUE:
            if not data.get("name"):
                self.add_error("name", "Name the value.")
            else:
                try:
                    data["parsed"] = MetadataRow.parse(
                        data.get("kind", "text"), data.get("value", "")
                    )
                except forms.ValidationError as exc:
                    self.add_error("value", exc)
            return data
        if not data.get("product"):
            self.add_error("product", "Choose a product.")
        if kind == EntitlementType.ALLOWANCE and data.get("amount") is None:
            self.add_error("amount", "How many units?")
        return data

    def spec(self) -> EntitlementSpec:
        data = self.cleaned_data
        kind = data["entitlement_type"]
        if kind == EntitlementType.VALUE:
            return EntitlementSpec(entitlement_type=kind, name=data["name"], value=data["parsed"])
        if kind == EntitlementType.ACCESS:
            return EntitlementSpec(entitlement_type=kind, product=data["product"])
        return EntitlementSpec(
            entitlement_type=kind,
            product=data["product"],
            amount=data["amount"],
            reset_unit=data.get("reset_unit") or None,
            reset_count=data.get("reset_count"),
            rollover_cap=data.get("rollover_cap"),
        )


EntitlementRows = formset_factory(
    EntitlementRow, extra=EXTRA_ROWS, max_num=MAX_ENTITLEMENTS, validate_max=True
)


def entitlement_rows(specs: tuple[EntitlementSpec, ...]) -> list[dict[str, Any]]:
    """A version's entitlements (`terms_of`) as the rows of the plan form."""
    rows: list[dict[str, Any]] = []
    for spec in specs:
        row: dict[str, Any] = {"entitlement_type": spec.entitlement_type}
        if spec.entitlement_type == EntitlementType.VALUE:
            row |= metadata_rows({"value": spec.value})[0] | {"name": spec.name}
            del row["key"]
        else:
            row["product"] = spec.product
        if spec.entitlement_type == EntitlementType.ALLOWANCE:
            row |= {
                "amount": spec.amount,
                "reset_count": spec.reset_count,
                "reset_unit": spec.reset_unit,
                "rollover_cap": spec.rollover_cap,
            }
        rows.append(row)
    return rows


def entitlements_of(rows: Any) -> tuple[EntitlementSpec, ...]:
    return tuple(row.spec() for row in rows if row.cleaned_data.get("entitlement_type"))


class ActiveForm(ConfirmedForm):
    """Activate or deactivate a product, an offer or a plan."""

    active = forms.TypedChoiceField(
        choices=[("1", "activate"), ("0", "deactivate")],
        coerce=lambda value: value == "1",
        widget=forms.HiddenInput,
    )


# --- Orders


class OrderFilterForm(forms.Form):
    status = forms.ChoiceField(required=False, choices=[("", "any status"), *OrderStatus.choices])
    customer = forms.CharField(
        required=False,
        max_length=255,
        widget=forms.TextInput(attrs={"placeholder": "Customer id or external id"}),
    )
    created_from = forms.DateField(
        required=False, label="Created from", widget=forms.DateInput(attrs={"type": "date"})
    )
    created_to = forms.DateField(
        required=False,
        label="to (inclusive)",
        widget=forms.DateInput(attrs={"type": "date"}),
    )


class OrderConfirmForm(ConfirmedForm):
    payment_id = forms.CharField(
        required=False,
        max_length=255,
        label="Payment id (optional)",
        help_text="The payment provider's id; one payment id pays one order.",
    )
    payment_method = forms.CharField(required=False, max_length=64, label="Payment method")


class OrderReasonForm(ConfirmedForm):
    reason = forms.CharField(
        required=False, max_length=1000, widget=forms.Textarea(attrs={"rows": 2})
    )


# --- A customer's corrections


class AdjustForm(ConfirmedForm):
    product = forms.ChoiceField(label="Product")
    amount = forms.IntegerField(
        min_value=-(10**12),
        max_value=10**12,
        help_text="Positive credits a new batch; negative debits what the customer holds.",
    )
    reason = forms.CharField(
        max_length=1000,
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text="Why: kept with the adjustment, in the ledger and in the audit log.",
    )
    expires_at = forms.DateTimeField(
        required=False,
        label="Credit expires (UTC, optional)",
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
        input_formats=DATETIME_FORMATS,
    )

    def __init__(self, *args: Any, products: list[Product], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        choices = [(p.key, f"{p.key} · {p.name}") for p in products]
        self.fields["product"].choices = choices  # type: ignore[attr-defined]

    def clean_amount(self) -> int:
        amount: int = self.cleaned_data["amount"]
        if amount == 0:
            raise forms.ValidationError("Credit (positive) or debit (negative) some units.")
        return amount

    def clean_reason(self) -> str:
        return _required_text(self.cleaned_data["reason"])

    def clean_expires_at(self) -> Any:
        at = self.cleaned_data.get("expires_at")
        if at is not None and at <= clock.now():
            raise forms.ValidationError("The expiry must be in the future.")
        return at


class RevokeForm(ConfirmedForm):
    reason = forms.CharField(
        max_length=1000,
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text="Why: kept in the ledger and in the audit log.",
    )

    def clean_reason(self) -> str:
        return _required_text(self.cleaned_data["reason"])


class EraseForm(RevokeForm):
    """Erase a customer: a reason, then a confirmation."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["reason"].help_text = "Why: kept in the audit log."


class MergeForm(EraseForm):
    """Merge this customer into another, named by its id or one of its external ids."""

    target = forms.CharField(
        max_length=255,
        label="Merge into",
        help_text="The customer that stays: its id, or one of its external ids.",
    )
    field_order = ["target", "reason"]

    def clean_target(self) -> str:
        return _required_text(self.cleaned_data["target"], "Name the customer that stays.")
