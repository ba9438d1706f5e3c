"""Hashes of trial identities: HMAC-SHA256 keyed by the tenant's own secret.

Values are normalised per kind first (`normalise_identity`), so one person cannot take a trial
twice by spelling:

- every kind and value: Unicode NFKC, case folding, invisible format characters (zero-width
  spaces, soft hyphens) dropped, outer spaces trimmed; kinds have aliases (`tel` is `phone`,
  `e-mail` is `email`);
- `phone`: a value spelled like a phone number (digits with spaces, dashes, dots, slashes,
  brackets, a leading `+` or `tel:`) becomes its digits, as in E.164 without the `+`; a leading
  `00` (the international prefix) and a `(0)` trunk mark are dropped;
- `email`: the domain loses trailing dots and is written in ASCII (IDNA); the local part loses
  its `+tag`, and its dots for gmail.com/googlemail.com.

Only hashes are stored, so rows written under earlier rules cannot be re-hashed: a lookup checks
the hash of each value under the current rules and under the earlier ones (`IdentityHashes`),
and a new trial records the current one.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import unicodedata
from dataclasses import dataclass

from django.db import connection

from billable.models import Customer, Grant, Subscription, TrialHistory
from tenants.models import Tenant

_GMAIL_DOMAINS = frozenset({"gmail.com", "googlemail.com"})
_KIND_ALIASES = {
    "e-mail": "email",
    "e_mail": "email",
    "mail": "email",
    "tel": "phone",
    "telephone": "phone",
    "mobile": "phone",
    "msisdn": "phone",
}
# Digits (any script: NFKC does not map every decimal digit to ASCII) with phone punctuation.
_PHONE = re.compile(r"(?:tel:)?\+?[\d\s\-./()]+")


def _fold(text: str) -> str:
    """NFKC with case folding; format characters (category Cf) dropped; trimmed."""
    text = unicodedata.normalize("NFKC", text)
    text = "".join(ch for ch in text if unicodedata.category(ch) != "Cf")
    return unicodedata.normalize("NFKC", text.casefold()).strip()


def _phone(text: str) -> str:
    if not _PHONE.fullmatch(text):
        return text  # not a phone number's spelling: compared as text
    # "(0)" is the trunk prefix written beside a country code: +44 (0)20 is +44 20.
    digits = "".join(
        str(unicodedata.decimal(ch)) for ch in text.replace("(0)", "") if ch.isdecimal()
    )
    if not digits:
        return text
    if digits.startswith("00") and len(digits) > 2:  # the international prefix, as "+"
        digits = digits[2:]
    return digits


def _domain(domain: str) -> str:
    domain = domain.rstrip(".")
    try:
        return domain.encode("idna").decode("ascii")
    except UnicodeError:  # not a valid host name: compared as written
        return domain


def _email(text: str) -> str:
    if "@" not in text:
        return text
    local, _, domain = text.rpartition("@")
    local = local.split("+", 1)[0]
    domain = _domain(domain)
    if domain in _GMAIL_DOMAINS:
        local = local.replace(".", "")
        domain = "gmail.com"
    return f"{local}@{domain}"


def normalise_identity(kind: str, value: str | int) -> str:
    """`kind:value` as hashed, under the current rules (see the module docstring)."""
    kind = _fold(str(kind))
    kind = _KIND_ALIASES.get(kind, kind)
    text = _fold(str(value))
    if kind == "phone":
        text = _phone(text)
    elif kind == "email":
        text = _email(text)
    return f"{kind}:{text}"


def _normalise_v1(kind: str, value: str | int) -> str:
    """The rules of earlier releases: trimmed and lower-cased, and the email rules on ASCII dots."""
    kind = str(kind).strip().lower()
    text = str(value).strip().lower()
    if kind == "email" and "@" in text:
        local, _, domain = text.rpartition("@")
        local = local.split("+", 1)[0]
        if domain in _GMAIL_DOMAINS:
            local = local.replace(".", "")
            domain = "gmail.com"
        text = f"{local}@{domain}"
    return f"{kind}:{text}"


# Every earlier rule set whose hashes may be in a tenant's trial history, newest first.
_EARLIER_RULES = (_normalise_v1,)


def identity_secret() -> bytes:
    """The active tenant's hashing key (one query: pass it on when hashing many identities)."""
    schema = connection.schema_name  # type: ignore[attr-defined]
    secret = Tenant.objects.filter(schema_name=schema).values_list("identity_secret", flat=True)
    value = secret.first()
    if not value:
        raise RuntimeError(f"no tenant owns schema {schema!r}")
    return value.encode()


def _hmac(key: bytes, normalised: str) -> str:
    # surrogatepass: a lone surrogate (valid in a JSON string escape) must not be a 500.
    return hmac.new(key, normalised.encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()


def identity_hash(kind: str, value: str | int, *, secret: bytes | None = None) -> str:
    """The hash of an identity under the current rules."""
    key = secret if secret is not None else identity_secret()
    return _hmac(key, normalise_identity(kind, value))


@dataclass(frozen=True)
class IdentityHashes:
    """The hashes a trial records (`current`) and looks up (`lookup`: also earlier rules')."""

    current: list[str]
    lookup: list[str]


def customer_identity_hashes(
    customer: Customer, extra: dict[str, str | int] | None = None
) -> IdentityHashes:
    """Hashes of the customer's own id, its identities (type = provider) and the given ones.

    The customer's id is always among them, so an erased customer (whose identities are gone)
    is still the one who took its trial.
    """
    pairs: list[tuple[str, str | int]] = [("customer", str(customer.pk))]
    pairs.extend(
        (identity.provider, identity.external_id) for identity in customer.identities.all()
    )
    pairs.extend((extra or {}).items())
    secret = identity_secret()
    current = {_hmac(secret, normalise_identity(kind, value)) for kind, value in pairs}
    earlier = {
        _hmac(secret, rules(kind, value)) for rules in _EARLIER_RULES for kind, value in pairs
    }
    return IdentityHashes(current=sorted(current), lookup=sorted(current | earlier))


def trial_taken(customer: Customer, hashes: IdentityHashes) -> bool:
    """Whether any of these identities, or the customer itself, has had a trial here: a trial
    grant or a plan's trial, one per person whichever it was.

    The customer's own trial grants count too (those of customers merged into it moved with
    the merge): a trial recorded before the customer's id was hashed still counts after erasure.
    """
    if TrialHistory.objects.filter(identity_hash__in=hashes.lookup).exists():
        return True
    if Subscription.objects.filter(customer=customer, trial_end__isnull=False).exists():
        return True
    return Grant.objects.filter(customer=customer, kind="trial").exists()
