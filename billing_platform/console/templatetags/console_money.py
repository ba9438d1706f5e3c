"""`{{ amount|money:currency }}`: an amount with its currency's minor digits, as the API shows
it (`19.00 USD`, `30 COINS`)."""

from __future__ import annotations

from decimal import Decimal

from django import template

from billable.currencies import format_amount
from billable.tenancy import currency_digits

register = template.Library()


@register.filter
def money(amount: Decimal | None, currency: str) -> str:
    if amount is None:
        return ""
    return f"{format_amount(amount, currency_digits(currency))} {currency}"
