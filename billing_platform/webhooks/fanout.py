"""Turn billing signals into outbox rows, inside the transaction that sent them.

Each signal becomes one `Event` and one `Delivery` per active endpoint of the tenant that
subscribes to its type, in the same transaction as the change: rolled-back work never produces an
event, committed work always does. A tenant without endpoints pays no query: its subscriptions
travel with the request's resolved key (`TenantRef.webhooks`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection

from billable import signals
from billing_platform.core.scope import scoped
from billing_platform.webhooks.events import EVENTS
from billing_platform.webhooks.models import Event
from billing_platform.webhooks.payloads import Builder
from billing_platform.webhooks.selectors import subscriptions_for_schema

logger = logging.getLogger("billable.webhooks")

NOTIFY_CHANNEL = "billable_webhooks"


def _current_tenant() -> tuple[int, tuple[tuple[str, tuple[str, ...]], ...]] | None:
    """(tenant id, active endpoint subscriptions) of the schema in use."""
    tenant = getattr(connection, "tenant", None)
    webhooks = getattr(tenant, "webhooks", None)
    tenant_id = getattr(tenant, "id", None)
    if webhooks is not None and tenant_id is not None:
        return tenant_id, webhooks
    schema = connection.schema_name  # type: ignore[attr-defined]
    # Once per run scope (a sweep over the schema), else at every event.
    return scoped(("webhook_subscriptions", schema), lambda: subscriptions_for_schema(schema))


def to_json(data: dict[str, Any]) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(json.dumps(data, cls=DjangoJSONEncoder))
    return loaded


def queue_deliveries(event_id: str, tenant_id: int, endpoint_ids: list[str]) -> int:
    """One pending delivery per still-active endpoint of the tenant; wake the workers.

    Returns how many were queued. NOTIFY only when something was (committing transactions that
    issued NOTIFY are serialised by PostgreSQL).
    """
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO webhooks_delivery
                (id, event_id, endpoint_id, status, attempts, next_attempt_at, last_error,
                 created_at, updated_at)
            SELECT gen_random_uuid(), %s, e.id, 'pending', 0, now(), '', now(), now()
            FROM webhooks_endpoint e
            WHERE e.id = ANY(%s::uuid[]) AND e.is_active AND e.tenant_id = %s
            """,
            [event_id, [str(i) for i in endpoint_ids], tenant_id],
        )
        queued = cursor.rowcount
        if queued:
            cursor.execute(f"NOTIFY {NOTIFY_CHANNEL}")
    return queued


def record_event(
    tenant_id: int, event_type: str, data: dict[str, Any], endpoint_ids: list[str]
) -> Event:
    """Write the event and one pending delivery per still-active endpoint; wake the workers."""
    event = Event.objects.create(tenant_id=tenant_id, type=event_type, data=to_json(data))
    queue_deliveries(event.pk, tenant_id, endpoint_ids)
    return event


def _subscribed(event_type: str) -> Callable[[], bool]:
    """Whether an active endpoint of the tenant in use takes `event_type`, known without a
    query when the subscriptions travel with the request's key (unknown: it may)."""

    def subscribed() -> bool:
        tenant = getattr(connection, "tenant", None)
        webhooks = getattr(tenant, "webhooks", None)
        if webhooks is None:
            return True
        return any(not types or event_type in types for _endpoint_id, types in webhooks)

    return subscribed


def _receiver(event_type: str, build: Builder) -> Callable[..., None]:
    def receive(sender: Any, **kwargs: Any) -> None:
        current = _current_tenant()
        if current is None:
            return
        tenant_id, subscriptions = current
        endpoint_ids = [
            endpoint_id for endpoint_id, types in subscriptions if not types or event_type in types
        ]
        if not endpoint_ids:
            return
        record_event(tenant_id, event_type, build(kwargs), endpoint_ids)

    return receive


def scrub_erased_customer(sender: Any, *, customer_ids: list[str], **kwargs: Any) -> None:
    """Empty the identities of an erased customer in the tenant's stored events.

    Runs in the erasing transaction, so the events listed, redelivered or still pending no longer
    carry what the customer was known by.
    """
    current = _current_tenant()
    if current is None:
        return
    tenant_id = current[0]
    with connection.cursor() as cursor:
        cursor.execute(
            """
            UPDATE webhooks_event
            SET data = jsonb_set(data, '{customer,identities}', '[]'::jsonb)
            WHERE tenant_id = %s AND data->'customer'->>'id' = ANY(%s)
              AND data->'customer'->'identities' <> '[]'::jsonb
            """,
            [tenant_id, customer_ids],
        )


def connect() -> None:
    for kind in EVENTS:
        if kind.signal is None or kind.build is None:
            continue  # sent by the platform itself (webhook.test)
        receiver = _receiver(kind.name, kind.build)
        signals.connect_conditional(
            kind.signal,
            receiver,
            dispatch_uid=f"webhooks:{kind.name}",
            acts=_subscribed(kind.name),
        )
    signals.customer_erased.connect(scrub_erased_customer, dispatch_uid="webhooks:scrub")
