"""Reads of the webhook tables."""

from __future__ import annotations

from django.db.models import QuerySet

from billing_platform.core.errors import NotFound
from billing_platform.webhooks.models import Delivery, Endpoint, Event
from tenants.models import Tenant


class EndpointNotFound(NotFound):
    code = "endpoint_not_found"
    title = "No such webhook endpoint"


class EventNotFound(NotFound):
    code = "event_not_found"
    title = "No such event"


def active_subscriptions(tenant_id: int) -> tuple[tuple[str, tuple[str, ...]], ...]:
    return tuple(
        (str(pk), tuple(types or ()))
        for pk, types in Endpoint.objects.filter(tenant_id=tenant_id, is_active=True)
        .order_by("created_at")
        .values_list("id", "event_types")
    )


def subscriptions_for_schema(
    schema_name: str,
) -> tuple[int, tuple[tuple[str, tuple[str, ...]], ...]] | None:
    tenant_id = Tenant.objects.filter(schema_name=schema_name).values_list("id", flat=True).first()
    if tenant_id is None:
        return None
    return tenant_id, active_subscriptions(tenant_id)


def endpoint_list(*, tenant_id: int) -> QuerySet[Endpoint]:
    return Endpoint.objects.filter(tenant_id=tenant_id)


def subscribed_endpoints(*, tenant_id: int, event_type: str) -> list[Endpoint]:
    """The tenant's active endpoints that subscribe to `event_type`."""
    return [
        endpoint
        for endpoint in Endpoint.objects.filter(tenant_id=tenant_id, is_active=True)
        if endpoint.subscribes_to(event_type)
    ]


def endpoint_get(*, tenant_id: int, endpoint_id: str) -> Endpoint:
    try:
        endpoint = Endpoint.objects.filter(tenant_id=tenant_id, pk=endpoint_id).first()
    except Exception:  # not a UUID: unknown like any other
        endpoint = None
    if endpoint is None:
        raise EndpointNotFound()
    return endpoint


def event_list(*, tenant_id: int, type: str | None = None) -> QuerySet[Event]:
    queryset = Event.objects.filter(tenant_id=tenant_id)
    if type:
        queryset = queryset.filter(type=type)
    return queryset


def event_get(*, tenant_id: int, event_id: str) -> Event:
    event = Event.objects.filter(tenant_id=tenant_id, pk=event_id).first()
    if event is None:
        raise EventNotFound()
    return event


def delivery_list(
    *,
    tenant_id: int,
    endpoint_id: str | None = None,
    status: str | None = None,
    event_id: str | None = None,
) -> QuerySet[Delivery]:
    queryset = Delivery.objects.filter(endpoint__tenant_id=tenant_id)
    if endpoint_id:
        try:
            queryset = queryset.filter(endpoint_id=endpoint_id)
        except Exception:  # not a UUID: matches nothing
            return Delivery.objects.none()
    if status:
        queryset = queryset.filter(status=status)
    if event_id:
        queryset = queryset.filter(event_id=event_id)
    return queryset
