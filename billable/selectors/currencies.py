"""Reads of the tenant's declared currencies."""

from __future__ import annotations

from django.db.models import QuerySet

from billable import errors
from billable.currencies import CODE_RE
from billable.models import Currency


def currency_list() -> QuerySet[Currency]:
    return Currency.objects.all()


def currency_get(*, code: str) -> Currency:
    """A declared currency by its code in any case (404 for another code or shape)."""
    text = code.strip()
    found = Currency.objects.filter(code=text.upper()).first() if CODE_RE.fullmatch(text) else None
    if found is None:
        raise errors.CurrencyNotFound()
    return found
