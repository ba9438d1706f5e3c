"""Hashing of trial identities: HMAC-SHA256 keyed by the tenant's own secret.

Values are normalised first (trimmed, lower-cased; an email loses its +tag, and dots in the local
part for gmail.com/googlemail.com), so one person cannot take a trial twice by spelling.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import TYPE_CHECKING, Any

from django.db import IntegrityError, connection, transaction

from billing_platform.core.db import service_atomic
from tenants.models import Tenant

if TYPE_CHECKING:
    from billable.models import Customer

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


def trial_grant(
    *,
    customer: Customer,
    offer: Any,
    identities: dict[str, str | int] | None = None,
    reason: str = "",
    metadata: dict[str, Any] | None = None,
    actor: str = "",
) -> Any:
    """Grant a trial unless any identity checked has had one in this tenant (409).

    The history rows and the grant commit together behind a unique constraint, so concurrent
    requests for one person grant exactly once. Sends `trial_activated`.
    """
    from billable import errors, signals
    from billable.models import TrialHistory
    from billable.services.grants import offer_grant

    hashes = customer_identity_hashes(customer, identities)
    if not hashes:
        hashes = [identity_hash("customer", str(customer.pk))]
    with service_atomic():
        if TrialHistory.objects.filter(identity_hash__in=hashes).exists():
            raise errors.TrialAlreadyUsed()
        result = offer_grant(
            customer=customer,
            offer=offer,
            kind="trial",
            reason=reason,
            metadata=metadata,
            actor=actor,
        )
        try:
            with transaction.atomic():
                TrialHistory.objects.bulk_create(
                    TrialHistory(identity_hash=value, grant=result.grant) for value in hashes
                )
        except IntegrityError as exc:
            raise errors.TrialAlreadyUsed() from exc
        signals.trial_activated.send(
            sender=TrialHistory, grant=result.grant, customer=customer, batches=result.batches
        )
    return result
