"""Currency codes and their minor digits, for prices validated and rendered as exact strings.

A price's currency is one of three kinds: an ISO 4217 code (its minor unit, from the table
below), a code the tenant declares itself (`billable.models.Currency`, such as Telegram Stars
`XTR`, with the digits it declares), or the key of a currency product (whole units, 0 digits).
This module knows ISO 4217 and the shape of a declared code; the tenant's declared codes are
passed in as a mapping (`billable.tenancy.currency_digits` reads them).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from decimal import Decimal

from billing_platform.core.errors import ValidationFailed

_CODES = (
    "AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BHD BIF BMD BND BOB BOV BRL BSD "
    "BTN BWP BYN BZD CAD CDF CHE CHF CHW CLF CLP CNY COP COU CRC CUC CUP CVE CZK DJF DKK DOP "
    "DZD EGP ERN ETB EUR FJD FKP GBP GEL GHS GIP GMD GNF GTQ GYD HKD HNL HTG HUF IDR ILS INR "
    "IQD IRR ISK JMD JOD JPY KES KGS KHR KMF KPW KRW KWD KYD KZT LAK LBP LKR LRD LSL LYD MAD "
    "MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MXV MYR MZN NAD NGN NIO NOK NPR NZD OMR PAB "
    "PEN PGK PHP PKR PLN PYG QAR RON RSD RUB RWF SAR SBD SCR SDG SEK SGD SHP SLE SLL SOS SRD "
    "SSP STN SVC SYP SZL THB TJS TMT TND TOP TRY TTD TWD TZS UAH UGX USD USN UYI UYU UYW UZS "
    "VED VES VND VUV WST XAF XAG XAU XBA XBB XBC XBD XCD XCG XDR XOF XPD XPF XPT XSU XTS XUA "
    "XXX YER ZAR ZMW ZWG ZWL"
)
ISO_CODES = frozenset(_CODES.split())

# Prices and order totals as their columns hold them (numeric(20, 4) and numeric(24, 4)): an
# offer's price has at most 15 digits before the point, as the API's decimal string does, and an
# order's total at most 20.
MAX_PRICE = Decimal("999999999999999.9999")
MAX_ORDER_TOTAL = Decimal("99999999999999999999.9999")

_ZERO = frozenset("BIF CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX UYI VND VUV XAF XOF XPF".split())
_THREE = frozenset("BHD IQD JOD KWD LYD OMR TND".split())
_FOUR = frozenset("CLF UYW".split())
# Metals, funds and test codes have no minor unit in ISO 4217; two digits are shown for them.


# A declared code: 3–8 ASCII letters or digits, starting with a letter; shown upper-case.
CODE_RE = re.compile(r"^[A-Za-z][A-Za-z0-9]{2,7}$")
MAX_MINOR_DIGITS = 4


def is_iso(code: str) -> bool:
    return code.upper() in ISO_CODES


def normalise_code(value: str, *, field: str = "code") -> str:
    """A declared currency code in its one spelling (upper-case); 422 for another shape."""
    text = str(value).strip()
    if not CODE_RE.fullmatch(text):
        raise ValidationFailed(
            f"{field} is 3–8 letters or digits, starting with a letter.", field=field,
            msg="invalid currency code",
        )
    return text.upper()


def minor_digits(currency: str, declared: Mapping[str, int] | None = None) -> int:
    """Digits after the point: ISO 4217's minor unit, a declared currency's own (`declared`:
    code to digits), else 0 (the key of a currency product counts whole units)."""
    code = currency.upper()
    if code not in ISO_CODES:
        return declared.get(code, 0) if declared else 0
    if code in _ZERO:
        return 0
    if code in _THREE:
        return 3
    if code in _FOUR:
        return 4
    return 2


def has_digits(amount: Decimal, digits: int) -> bool:
    """Whether `amount` needs no more than `digits` places after the point."""
    return amount == amount.quantize(Decimal(1).scaleb(-digits))


def format_amount(amount: Decimal, digits: int) -> str:
    """The amount as a string with exactly `digits` places after the point."""
    return str(amount.quantize(Decimal(1).scaleb(-digits)))
