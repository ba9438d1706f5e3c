"""Hashes of trial identities: HMAC-SHA256 keyed by the tenant's own secret.

Values are normalised first (trimmed, lower-cased; an email loses its +tag, and dots in the local
part for gmail.com/googlemail.com), so one person cannot take a trial twice by spelling.
"""

from __future__ import annotations

import hashlib
import hmac

from django.db import connection

from billable.models import Customer
from tenants.models import Tenant

_GMAIL_DOMAINS = frozenset({"gmail.com", "googlemail.com"})


def normalise_identity(kind: str, value: str | int) -> str:
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


def _secret() -> bytes:
    schema = connection.schema_name  # type: ignore[attr-defined]
    secret = Tenant.objects.filter(schema_name=schema).values_list("identity_secret", flat=True)
    value = secret.first()
    if not value:
        raise RuntimeError(f"no tenant owns schema {schema!r}")
    return value.encode()


def identity_hash(kind: str, value: str | int, *, secret: bytes | None = None) -> str:
    key = secret if secret is not None else _secret()
    return hmac.new(key, normalise_identity(kind, value).encode(), hashlib.sha256).hexdigest()


def customer_identity_hashes(
    customer: Customer, extra: dict[str, str | int] | None = None
) -> list[str]:
    """Hashes of every identity of the customer (type = provider) plus the given ones."""
    pairs: list[tuple[str, str | int]] = [
        (identity.provider, identity.external_id) for identity in customer.identities.all()
    ]
    pairs.extend((extra or {}).items())
    if not pairs:
        return []
    secret = _secret()
    return sorted({identity_hash(kind, value, secret=secret) for kind, value in pairs})
