"""The developers pages' actions, each through the service the API calls for it.

Keys go through `tenants.services` (`api_key_create`, `api_key_revoke`, as `POST` and
`DELETE /keys` and the operators' admin), endpoints through `webhooks.services` (as
`/webhooks/endpoints`: the same URL check, event types, limits), redelivery through
`event_redeliver` (as `POST /webhooks/events/{id}/redeliver` with one `endpoint_id`). Each
returns the `Outcome` that `services.submitted` records; a new secret is handed back in a
`NewSecret`, never in the outcome (the audit log and the form's stored outcome never hold it).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from billing_platform.console.services import Actor, Outcome
from billing_platform.core.errors import Conflict
from billing_platform.webhooks import services as webhooks
from billing_platform.webhooks.models import Delivery, Endpoint
from tenants import services as tenants
from tenants.models import ApiKey


@dataclass
class NewSecret:
    """What an action made that is shown once: the object's id and its secret."""

    object_id: str = ""
    secret: str = ""


class EndpointDisabled(Conflict):
    code = "endpoint_disabled"
    title = "The endpoint is disabled"


# --- API keys


def key_create(
    *,
    actor: Actor,
    name: str,
    scopes: list[str],
    expires_at: datetime | None,
    into: NewSecret,
) -> Outcome:
    key, raw = tenants.api_key_create(
        tenant=actor.tenant, name=name, scopes=scopes, expires_at=expires_at
    )
    into.object_id, into.secret = str(key.pk), raw
    return Outcome(
        message=f"Created the key {key.name} ({key.prefix}…).",
        target=f"key:{key.pk}",
        detail={
            "name": key.name,
            "prefix": key.prefix,
            "scopes": list(key.scopes),
            "expires_at": key.expires_at.isoformat() if key.expires_at else None,
        },
    )


def key_revoke(*, actor: Actor, key: ApiKey) -> Outcome:
    already = key.revoked_at is not None
    key = tenants.api_key_revoke(key=key)
    return Outcome(
        message=(
            f"The key {key.name} ({key.prefix}…) was already revoked."
            if already
            else f"Revoked the key {key.name} ({key.prefix}…): it is refused from now on."
        ),
        target=f"key:{key.pk}",
        detail={"name": key.name, "prefix": key.prefix, "already_revoked": already},
    )


# --- Webhook endpoints


def _target(endpoint: Endpoint) -> str:
    return f"webhook:{endpoint.pk}"


def endpoint_create(
    *,
    actor: Actor,
    url: str,
    event_types: list[str],
    description: str,
    into: NewSecret,
) -> Outcome:
    endpoint, secret = webhooks.endpoint_create(
        tenant_id=actor.tenant.pk, url=url, event_types=event_types, description=description
    )
    into.object_id, into.secret = str(endpoint.pk), secret
    return Outcome(
        message=f"Registered {endpoint.url}.",
        target=_target(endpoint),
        detail={"url": endpoint.url, "event_types": list(endpoint.event_types)},
    )


def endpoint_event_types(*, actor: Actor, endpoint: Endpoint, event_types: list[str]) -> Outcome:
    before = list(endpoint.event_types)
    endpoint = webhooks.endpoint_update(endpoint=endpoint, event_types=event_types)
    described = ", ".join(endpoint.event_types) or "every event type"
    return Outcome(
        message=f"{endpoint.url} now receives {described}.",
        target=_target(endpoint),
        detail={"event_types": list(endpoint.event_types), "before": before},
    )


def endpoint_set_active(*, actor: Actor, endpoint: Endpoint, active: bool) -> Outcome:
    """Enable (which also clears a disabling after failures and its failure count) or disable."""
    was = endpoint.is_active
    reason = endpoint.disabled_reason
    endpoint = webhooks.endpoint_update(endpoint=endpoint, is_active=active)
    if active:
        message = f"{endpoint.url} is enabled" + (" (it already was)." if was else ".")
    else:
        message = f"{endpoint.url} is disabled" + (
            "." if was else " (it already was)."
        ) + " Nothing is sent to it until it is enabled."
    return Outcome(
        message=message,
        target=_target(endpoint),
        detail={"was_active": was, **({"disabled_reason": reason} if active and reason else {})},
    )


def endpoint_rotate(*, actor: Actor, endpoint: Endpoint, into: NewSecret) -> Outcome:
    endpoint, secret = webhooks.endpoint_rotate_secret(endpoint=endpoint)
    into.object_id, into.secret = str(endpoint.pk), secret
    return Outcome(
        message=(
            f"A new signing secret for {endpoint.url}: deliveries carry both signatures, "
            "the new and the old, for 24 hours."
        ),
        target=_target(endpoint),
        detail={"previous_secret_expires_at": _iso(endpoint.previous_secret_expires_at)},
    )


def endpoint_test(*, actor: Actor, endpoint: Endpoint) -> Outcome:
    if not endpoint.is_active:
        raise EndpointDisabled("This endpoint is disabled: enable it before sending a test event.")
    event = webhooks.endpoint_test(endpoint=endpoint)
    return Outcome(
        message=f"A webhook.test event ({event.pk}) is on its way to {endpoint.url}.",
        target=_target(endpoint),
        detail={"event_id": event.pk},
    )


def delivery_redeliver(*, actor: Actor, delivery: Delivery) -> Outcome:
    """Send the delivery's event again to its endpoint: a new delivery, as the API's redeliver
    with this `endpoint_id` (the old one and its attempts stay in the log as they were)."""
    endpoint = delivery.endpoint
    if not endpoint.is_active:
        raise EndpointDisabled(
            "This endpoint is disabled: enable it before sending the event again."
        )
    same = Delivery.objects.filter(event_id=delivery.event_id, endpoint_id=endpoint.pk)
    before = set(same.values_list("pk", flat=True))
    queued = webhooks.event_redeliver(event=delivery.event, endpoint=endpoint)
    if not queued:  # disabled meanwhile (the worker, after failures)
        raise EndpointDisabled(
            "This endpoint is disabled: enable it before sending the event again."
        )
    new = same.exclude(pk__in=before).values_list("pk", flat=True).first()
    return Outcome(
        message=f"The event {delivery.event_id} goes again to {endpoint.url}, as a new delivery.",
        target=f"delivery:{delivery.pk}",
        detail={
            "event_id": delivery.event_id,
            "endpoint_id": str(endpoint.pk),
            "new_delivery_id": str(new) if new else None,
        },
    )


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None
