"""Declared currencies: codes a tenant prices in beside ISO 4217 (Telegram Stars, `XTR`).

A declared code takes a name in the catalog's one namespace (`claim_key`, kind "currency"), so
it is never also a product key (a currency product's above all), an offer SKU or a plan key.
Its minor digits are fixed once an offer, plan version or order is priced in it.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction

from billable import errors
from billable.currencies import MAX_MINOR_DIGITS, is_iso, normalise_code
from billable.models import CatalogKey, Currency, Offer, Order, PlanVersion
from billable.services.catalog import claim_key
from billing_platform.core.errors import ValidationFailed
from billing_platform.core.patches import UNSET, save_patch


def _check_digits(minor_digits: int) -> None:
    if not 0 <= minor_digits <= MAX_MINOR_DIGITS:
        raise ValidationFailed(
            f"minor_digits is 0 to {MAX_MINOR_DIGITS}.", field="minor_digits",
            msg="out of range",
        )


def currency_in_use(code: str) -> bool:
    """Whether an offer, a plan version or an order is priced in `code`."""
    return (
        Offer.objects.filter(currency=code).exists()
        or PlanVersion.objects.filter(currency=code).exists()
        or Order.objects.filter(currency=code).exists()
    )


def currency_create(*, code: str, name: str, minor_digits: int) -> Currency:
    """Declare a currency (422 `iso_currency` for an ISO 4217 code, 409 `key_taken` for a name
    a product, offer, plan or currency already has)."""
    code = normalise_code(code)
    if is_iso(code):
        raise errors.IsoCurrency(f"{code} is an ISO 4217 code; it needs no declaring.")
    _check_digits(minor_digits)
    with transaction.atomic():
        claim_key(code, "currency")
        return Currency.objects.create(code=code, name=name, minor_digits=minor_digits)


def currency_update(
    *, currency: Currency, name: str = UNSET, minor_digits: int = UNSET
) -> Currency:
    """Rename a currency, or change its digits while nothing is priced in it (409
    `currency_in_use`). The row lock waits for offers and plan versions being priced in it
    (`check_currency` holds it until they commit), so the check sees them."""
    with transaction.atomic():
        currency = Currency.objects.select_for_update().get(pk=currency.pk)
        if minor_digits is not UNSET and minor_digits != currency.minor_digits:
            _check_digits(minor_digits)
            if currency_in_use(currency.code):
                raise errors.CurrencyInUse(
                    f"Prices in {currency.code} exist; its minor digits are fixed."
                )
        changes: dict[str, Any] = {"name": name, "minor_digits": minor_digits}
        save_patch(currency, changes)
    return currency


def currency_delete(*, currency: Currency) -> None:
    """Withdraw a currency nothing is priced in (409 `currency_in_use`), freeing its code."""
    with transaction.atomic():
        currency = Currency.objects.select_for_update().get(pk=currency.pk)
        if currency_in_use(currency.code):
            raise errors.CurrencyInUse(f"Prices in {currency.code} exist; it cannot be deleted.")
        CatalogKey.objects.filter(key=currency.code, kind="currency").delete()
        currency.delete()
