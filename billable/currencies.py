"""ISO 4217 currency codes and their minor digits, for prices rendered as exact strings."""

from __future__ import annotations

from decimal import Decimal

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


def is_iso(code: str) -> bool:
    return code.upper() in ISO_CODES


def minor_digits(currency: str) -> int:
    """Digits after the point: ISO 4217's minor unit, 0 for an internal currency product."""
    code = currency.upper()
    if code not in ISO_CODES:
        return 0
    if code in _ZERO:
        return 0
    if code in _THREE:
        return 3
    if code in _FOUR:
        return 4
    return 2


def format_amount(amount: Decimal, currency: str) -> str:
    digits = minor_digits(currency)
    quantum = Decimal(1).scaleb(-digits)
    return str(amount.quantize(quantum))
