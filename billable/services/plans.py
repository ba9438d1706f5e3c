"""Plans and their versions: what a subscription offer gives, and its terms over time.

A plan's key shares the one namespace of product keys and offer SKUs. Its terms (billing
interval, price, trial, entitlements) are a `PlanVersion`; changing any of them writes the next
version and makes it the plan's current one, so the terms a subscriber took never change under
them. Name, description, metadata and `is_active` belong to the plan and change in place.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any

from django.db import transaction

from billable import errors
from billable.catalog_keys import FEATURE_RE, normalise_key
from billable.clock import now
from billable.metadata import MAX_METADATA_BYTES, metadata_bytes
from billable.models import (
    EntitlementType,
    Plan,
    PlanEntitlement,
    PlanVersion,
    Product,
    ProductType,
)
from billable.periods import interval_period, period_too_long
from billable.services.catalog import check_currency, claim_key
from billing_platform.core.errors import ValidationFailed
from billing_platform.core.patches import UNSET, save_patch

MAX_TRIAL_DAYS = 3_650
MAX_ENTITLEMENTS = 50


@dataclass(frozen=True)
class EntitlementSpec:
    """One entitlement as a caller gives it (see `PlanEntitlement`)."""

    entitlement_type: str
    product: str | None = None
    amount: int | None = None
    reset_unit: str | None = None
    reset_count: int | None = None
    rollover_cap: int | None = None
    name: str = ""
    value: Any = None


@dataclass(frozen=True)
class Terms:
    """A plan version's terms."""

    interval_unit: str
    interval_count: int
    price: Decimal
    currency: str
    trial_days: int
    entitlements: tuple[EntitlementSpec, ...]


def _check_interval(unit: str, count: int, *, field: Any) -> None:
    if count < 1 or period_too_long(*interval_period(unit, count)):
        raise ValidationFailed("A period is 1 unit to 100 years.", field=field, msg="out of range")


def _resolve(
    terms: Terms, *, kept: frozenset[str] = frozenset()
) -> tuple[Terms, list[Product | None]]:
    """Check the terms; the terms in their one spelling (keys upper-case, value names lower-case,
    reset periods and rollover caps filled in, the currency code), and each entitlement's
    product. A product deactivated since is accepted where the current version already names
    it (`kept`): a change of price does not have to drop it."""
    _check_interval(terms.interval_unit, terms.interval_count, field="interval_count")
    if not 0 <= terms.trial_days <= MAX_TRIAL_DAYS:
        raise ValidationFailed(
            f"trial_days is 0 to {MAX_TRIAL_DAYS}.", field="trial_days", msg="out of range"
        )
    if len(terms.entitlements) > MAX_ENTITLEMENTS:
        raise ValidationFailed(
            f"A plan has at most {MAX_ENTITLEMENTS} entitlements.", field="entitlements",
            msg="too many",
        )
    keys = [
        normalise_key(spec.product, field="product")
        for spec in terms.entitlements
        if spec.product is not None
    ]
    products = {p.key: p for p in Product.objects.filter(key__in=keys)}
    seen: set[tuple[str, str]] = set()
    specs: list[EntitlementSpec] = []
    found_products: list[Product | None] = []
    for index, spec in enumerate(terms.entitlements):
        field: tuple[Any, ...] = ("entitlements", index)
        if spec.entitlement_type == EntitlementType.VALUE:
            name = spec.name.strip().lower()
            if not FEATURE_RE.fullmatch(name):
                raise ValidationFailed(
                    "A value's name is 1–64 letters, digits, '_', '-' or '.'.",
                    field=(*field, "name"), msg="invalid name",
                )
            if metadata_bytes({"value": spec.value}) > MAX_METADATA_BYTES:
                raise ValidationFailed(
                    "A value is at most 16 KiB of JSON.", field=(*field, "value"), msg="too large"
                )
            identity = ("value", name)
            spec = EntitlementSpec(entitlement_type=EntitlementType.VALUE, name=name,
                                   value=spec.value)
            product = None
        else:
            if spec.product is None:
                raise ValidationFailed(
                    f"An {spec.entitlement_type} names a product.", field=(*field, "product"),
                    msg="missing",
                )
            key = normalise_key(spec.product, field="product")
            found = products.get(key)
            if found is None:
                raise errors.UnknownProduct(f"No product has the key {key}.")
            if not found.is_active and key not in kept:
                raise errors.InactiveProduct(f"{key} is not active.")
            product = found
            if spec.entitlement_type == EntitlementType.ALLOWANCE:
                spec = _allowance(spec, product, terms, field)
            else:
                if product.product_type == ProductType.QUANTITY:
                    raise ValidationFailed(
                        "Access is to a period or unlimited product; a quantity product is an "
                        "allowance.", field=(*field, "product"), msg="quantity product",
                    )
                spec = EntitlementSpec(entitlement_type=EntitlementType.ACCESS, product=key)
            identity = (spec.entitlement_type, key)
        if identity in seen:
            raise ValidationFailed(
                "Each product and each value appears once in a plan's entitlements.",
                field=field, msg="duplicate",
            )
        seen.add(identity)
        specs.append(spec)
        found_products.append(product)
    currency = check_currency(terms.currency, terms.price)
    return replace(terms, currency=currency, entitlements=tuple(specs)), found_products


def _allowance(
    spec: EntitlementSpec, product: Product, terms: Terms, field: tuple[Any, ...]
) -> EntitlementSpec:
    if product.product_type != ProductType.QUANTITY:
        raise ValidationFailed(
            "An allowance is of a quantity product.", field=(*field, "product"),
            msg="not a quantity product",
        )
    if spec.amount is None or spec.amount < 1:
        raise ValidationFailed(
            "An allowance grants at least 1 unit.", field=(*field, "amount"), msg="out of range"
        )
    unit = spec.reset_unit or terms.interval_unit
    count = spec.reset_count if spec.reset_count is not None else (
        terms.interval_count if spec.reset_unit is None else 1
    )
    _check_interval(unit, count, field=(*field, "reset_count"))
    cap = spec.rollover_cap or 0
    if cap < 0:
        raise ValidationFailed(
            "rollover_cap is 0 or more.", field=(*field, "rollover_cap"), msg="out of range"
        )
    return EntitlementSpec(
        entitlement_type=EntitlementType.ALLOWANCE, product=product.key, amount=spec.amount,
        reset_unit=unit, reset_count=count, rollover_cap=cap,
    )


def _write_version(
    plan: Plan, number: int, terms: Terms, products: list[Product | None]
) -> PlanVersion:
    """Write checked terms (`_resolve`) as version `number` of the plan."""
    version = PlanVersion.objects.create(
        plan=plan,
        version=number,
        interval_unit=terms.interval_unit,
        interval_count=terms.interval_count,
        price=terms.price,
        currency=terms.currency,
        trial_days=terms.trial_days,
    )
    PlanEntitlement.objects.bulk_create(
        PlanEntitlement(
            version=version,
            position=position,
            entitlement_type=spec.entitlement_type,
            product=product,
            amount=spec.amount if spec.entitlement_type == EntitlementType.ALLOWANCE else None,
            reset_unit=spec.reset_unit or "",
            reset_count=spec.reset_count,
            rollover_cap=spec.rollover_cap,
            name=spec.name,
            value=spec.value,
        )
        for position, (spec, product) in enumerate(
            zip(terms.entitlements, products, strict=True)
        )
    )
    return version


def plan_create(
    *,
    key: str,
    name: str,
    terms: Terms,
    description: str = "",
    is_active: bool = True,
    metadata: dict[str, Any] | None = None,
    upgrade_allowance: str = "prorated",
) -> Plan:
    """A plan with its first version (409 `key_taken` if a product, offer or plan has the key)."""
    key = normalise_key(key)
    with transaction.atomic():
        checked, products = _resolve(terms)
        claim_key(key, "plan")
        plan = Plan.objects.create(
            key=key, name=name, description=description, is_active=is_active,
            metadata=metadata or {}, current_version=1, upgrade_allowance=upgrade_allowance,
        )
        _write_version(plan, 1, checked, products)
    return plan


def terms_of(version: PlanVersion) -> Terms:
    """A version's terms, as `plan_update` starts from them."""
    return Terms(
        interval_unit=version.interval_unit,
        interval_count=version.interval_count,
        price=version.price,
        currency=version.currency,
        trial_days=version.trial_days,
        entitlements=tuple(
            EntitlementSpec(
                entitlement_type=e.entitlement_type,
                product=e.product.key if e.product is not None else None,
                amount=e.amount,
                reset_unit=e.reset_unit or None,
                reset_count=e.reset_count,
                rollover_cap=e.rollover_cap,
                name=e.name,
                value=e.value,
            )
            for e in version.entitlements.select_related("product")
        ),
    )


def plan_update(
    *,
    plan: Plan,
    name: str = UNSET,
    description: str = UNSET,
    is_active: bool = UNSET,
    metadata: dict[str, Any] = UNSET,
    upgrade_allowance: str = UNSET,
    interval_unit: str = UNSET,
    interval_count: int = UNSET,
    price: Decimal = UNSET,
    currency: str = UNSET,
    trial_days: int = UNSET,
    entitlements: Sequence[EntitlementSpec] = UNSET,
) -> Plan:
    """Change a plan. New terms (any of interval, price, currency, trial, entitlements that
    differ from the current version's) write the next version and make it current."""
    with transaction.atomic():
        plan = Plan.objects.select_for_update().get(pk=plan.pk)
        current = PlanVersion.objects.get(plan=plan, version=plan.current_version)
        old = terms_of(current)
        given: dict[str, Any] = {
            "interval_unit": interval_unit,
            "interval_count": interval_count,
            "price": price,
            "currency": currency,
            "trial_days": trial_days,
            "entitlements": tuple(entitlements) if entitlements is not UNSET else UNSET,
        }
        changed = {k: v for k, v in given.items() if v is not UNSET}
        if changed:
            kept = frozenset(e.product for e in old.entitlements if e.product is not None)
            new, products = _resolve(replace(old, **changed), kept=kept)
            if new != old:
                plan.current_version += 1
                _write_version(plan, plan.current_version, new, products)
        save_patch(
            plan,
            {"name": name, "description": description, "is_active": is_active,
             "metadata": metadata, "upgrade_allowance": upgrade_allowance,
             "current_version": plan.current_version},
        )
    return plan


def plan_version_retire(*, version: PlanVersion) -> PlanVersion:
    """Take no new subscriptions on this version (its subscribers keep it). Idempotent."""
    with transaction.atomic():
        version = PlanVersion.objects.select_for_update().get(pk=version.pk)
        if version.retired_at is None:
            version.retired_at = now()
            version.save(update_fields=["retired_at"])
    return version
