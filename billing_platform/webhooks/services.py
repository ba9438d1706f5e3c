"""Write services of tenant webhook endpoints: create, change, rotate, test, redeliver."""

from __future__ import annotations

import base64
import re
import secrets
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from billing_platform.core import crypto
from billing_platform.core.errors import Conflict, ValidationFailed
from billing_platform.core.patches import UNSET, save_patch
from billing_platform.webhooks.delivery import resolve_checked
from billing_platform.webhooks.events import EVENT_TYPES, WEBHOOK_TEST
from billing_platform.webhooks.fanout import queue_deliveries, record_event
from billing_platform.webhooks.models import Endpoint, Event
from billing_platform.webhooks.selectors import subscribed_endpoints
from tenants import resolution
from tenants.models import Tenant


def new_signing_secret() -> str:
    """A Standard Webhooks secret: `whsec_` + base64 of 24 random bytes."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


HEADER_NAME_RE = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,100}$")
RESERVED_HEADERS = frozenset(
    {
        "content-type",
        "content-length",
        "host",
        "user-agent",
        "webhook-id",
        "webhook-timestamp",
        "webhook-signature",
        "connection",
        "transfer-encoding",
        # Hop-by-hop and encoding headers belong to the connection, not to the receiver.
        "keep-alive",
        "te",
        "trailer",
        "upgrade",
        "proxy-authorization",
        "proxy-authenticate",
        "proxy-connection",
        "content-encoding",
        "accept-encoding",
    }
)
# Visible ASCII and spaces inside: what every HTTP stack sends unchanged.
HEADER_VALUE_RE = re.compile(r"^[\x21-\x7e]([\x20-\x7e]*[\x21-\x7e])?$")
ROTATION_OVERLAP = timedelta(hours=24)


class TooManyEndpoints(Conflict):
    code = "too_many_endpoints"
    title = "This tenant already has the maximum number of webhook endpoints"


def _check_types(event_types: list[str]) -> list[str]:
    unknown = sorted(set(event_types) - set(EVENT_TYPES))
    if unknown:
        raise ValidationFailed(
            f"Unknown event types: {', '.join(unknown)}.",
            field="event_types",
            msg="unknown event type",
        )
    return list(dict.fromkeys(event_types))


def _check_headers(headers: dict[str, str]) -> dict[str, str]:
    for name, value in headers.items():
        if not HEADER_NAME_RE.fullmatch(name) or name.lower() in RESERVED_HEADERS:
            raise ValidationFailed(
                f"{name!r} cannot be a custom header.",
                field=("headers", name),
                msg="invalid header name",
            )
        if not isinstance(value, str) or not HEADER_VALUE_RE.fullmatch(value) or len(value) > 4000:
            raise ValidationFailed(
                f"The value of {name!r} is not a valid header value.",
                field=("headers", name),
                msg="invalid header value",
            )
    return headers


def endpoint_create(
    *,
    tenant_id: int,
    url: str,
    event_types: list[str] | None = None,
    description: str = "",
    headers: dict[str, str] | None = None,
    is_active: bool = True,
) -> tuple[Endpoint, str]:
    """Register an endpoint; returns it with its signing secret (shown once)."""
    resolve_checked(url)
    types = _check_types(event_types or [])
    custom = _check_headers(headers or {})
    secret = new_signing_secret()
    with transaction.atomic():
        tenant = Tenant.objects.select_for_update().get(pk=tenant_id)
        if Endpoint.objects.filter(tenant=tenant).count() >= settings.WEBHOOK_MAX_ENDPOINTS:
            raise TooManyEndpoints(
                f"A tenant may register {settings.WEBHOOK_MAX_ENDPOINTS} endpoints."
            )
        endpoint = Endpoint.objects.create(
            tenant=tenant,
            url=url,
            event_types=types,
            description=description,
            headers_encrypted=crypto.encrypt_json(custom) if custom else "",
            secret_encrypted=crypto.encrypt(secret),
            is_active=is_active,
        )
        resolution.invalidate_tenant(tenant)
    return endpoint, secret


def endpoint_update(
    *,
    endpoint: Endpoint,
    url: str = UNSET,
    event_types: list[str] = UNSET,
    description: str = UNSET,
    headers: dict[str, str] = UNSET,
    is_active: bool = UNSET,
) -> Endpoint:
    if url is not UNSET:
        resolve_checked(url)
    with transaction.atomic():
        endpoint = Endpoint.objects.select_for_update().select_related("tenant").get(pk=endpoint.pk)
        changes: dict[str, Any] = {"url": url, "description": description, "is_active": is_active}
        if event_types is not UNSET:
            changes["event_types"] = _check_types(event_types)
        if headers is not UNSET:
            custom = _check_headers(headers)
            changes["headers_encrypted"] = crypto.encrypt_json(custom) if custom else ""
        if is_active is not UNSET and is_active:
            changes.update(
                disabled_at=None, disabled_reason="", consecutive_failures=0, failing_since=None
            )
        save_patch(endpoint, changes)
        resolution.invalidate_tenant(endpoint.tenant)
    return endpoint


def endpoint_delete(*, endpoint: Endpoint) -> None:
    with transaction.atomic():
        tenant = endpoint.tenant
        endpoint.delete()
        resolution.invalidate_tenant(tenant)


def endpoint_rotate_secret(*, endpoint: Endpoint) -> tuple[Endpoint, str]:
    """A new secret; deliveries carry both signatures for 24 hours."""
    secret = new_signing_secret()
    with transaction.atomic():
        endpoint = Endpoint.objects.select_for_update().get(pk=endpoint.pk)
        endpoint.previous_secret_encrypted = endpoint.secret_encrypted
        endpoint.previous_secret_expires_at = timezone.now() + ROTATION_OVERLAP
        endpoint.secret_encrypted = crypto.encrypt(secret)
        endpoint.save(
            update_fields=[
                "previous_secret_encrypted",
                "previous_secret_expires_at",
                "secret_encrypted",
            ]
        )
    return endpoint, secret


def endpoint_test(*, endpoint: Endpoint) -> Event:
    """Send a `webhook.test` event to this endpoint only, whatever it subscribes to."""
    with transaction.atomic():
        return record_event(
            endpoint.tenant_id,
            WEBHOOK_TEST,
            {"endpoint_id": str(endpoint.pk), "message": "Test event from Billable."},
            [str(endpoint.pk)],
        )


def event_redeliver(*, event: Event, endpoint: Endpoint | None = None) -> int:
    """Queue the event again, to one endpoint or to every subscribed one; returns how many.

    Only active endpoints are queued (re-enable a disabled one first); a delivery that already
    succeeded is sent again all the same.
    """
    if endpoint is not None:
        ids = [endpoint.pk]
    else:
        subscribed = subscribed_endpoints(tenant_id=event.tenant_id, event_type=event.type)
        ids = [e.pk for e in subscribed]
    with transaction.atomic():
        return queue_deliveries(event.pk, event.tenant_id, [str(i) for i in ids])


def purge_old(*, days: int | None = None) -> int:
    """Drop events, deliveries and attempt logs older than the retention; returns events dropped.

    Plain SQL rather than the ORM's cascade, which would load every doomed row into memory.
    """
    cutoff = timezone.now() - timedelta(days=days or settings.WEBHOOK_RETENTION_DAYS)
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            """
            DELETE FROM webhooks_deliveryattempt
            WHERE attempted_at < %s
               OR delivery_id IN (SELECT d.id FROM webhooks_delivery d
                                  JOIN webhooks_event e ON e.id = d.event_id
                                  WHERE e.created_at < %s)
            """,
            [cutoff, cutoff],
        )
        cursor.execute(
            """
            DELETE FROM webhooks_delivery
            WHERE event_id IN (SELECT id FROM webhooks_event WHERE created_at < %s)
            """,
            [cutoff],
        )
        cursor.execute("DELETE FROM webhooks_event WHERE created_at < %s", [cutoff])
        return int(cursor.rowcount)
