"""`/webhooks`: a tenant's endpoints, its events and their deliveries (scope `admin`)."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse
from ninja import Query, Router, Status

from billing_platform.core import crypto
from billing_platform.core.identity import caller
from billing_platform.core.pagination import PageParams, page_data, paginate
from billing_platform.core.problems import error_responses
from billing_platform.webhooks import selectors, services
from billing_platform.webhooks.delivery import event_object
from billing_platform.webhooks.models import Delivery, Endpoint, Event
from billing_platform.webhooks.schemas import (
    AcceptedOut,
    DeliveryPage,
    EndpointIn,
    EndpointOut,
    EndpointPage,
    EndpointPatch,
    EndpointWithSecretOut,
    EventPage,
    RedeliverIn,
)
from tenants.auth import tenant_auth

router = Router(tags=["webhooks"], auth=tenant_auth("admin"))


def _tenant(request: HttpRequest) -> Any:
    return caller(request).tenant


def endpoint_data(endpoint: Endpoint) -> dict[str, Any]:
    headers = crypto.decrypt_json(endpoint.headers_encrypted)
    return {
        "id": str(endpoint.pk),
        "url": endpoint.url,
        "description": endpoint.description,
        "event_types": list(endpoint.event_types),
        "headers": dict.fromkeys(headers, "••••"),
        "is_active": endpoint.is_active,
        "disabled_at": endpoint.disabled_at,
        "disabled_reason": endpoint.disabled_reason,
        "created_at": endpoint.created_at,
    }


def event_data(event: Event, slug: str) -> dict[str, Any]:
    return event_object(event, slug)


def delivery_data(delivery: Delivery) -> dict[str, Any]:
    return {
        "id": str(delivery.pk),
        "event_id": delivery.event_id,
        "endpoint_id": str(delivery.endpoint_id),
        "status": delivery.status,
        "attempts": delivery.attempts,
        "next_attempt_at": delivery.next_attempt_at,
        "last_status_code": delivery.last_status_code,
        "last_error": delivery.last_error,
    }


@router.get(
    "/endpoints",
    response={200: EndpointPage, **error_responses()},
    operation_id="webhooks_endpoint_list",
    summary="List webhook endpoints",
)
def endpoint_list(request: HttpRequest, page: Query[PageParams]) -> dict[str, Any]:
    """The tenant's webhook endpoints, newest first; header values are masked and the secret is
    never shown. Paginated with `limit` and `cursor`."""
    result = paginate(
        selectors.endpoint_list(tenant_id=_tenant(request).id),
        limit=page.limit,
        cursor=page.cursor,
    )
    return page_data(result, endpoint_data)


@router.post(
    "/endpoints",
    response={201: EndpointWithSecretOut, **error_responses(409)},
    operation_id="webhooks_endpoint_create",
    summary="Register a webhook endpoint (the signing secret is shown once)",
)
def endpoint_create(request: HttpRequest, payload: EndpointIn) -> Status:
    """Register a URL to receive events (`event_types`, empty for all), signed with Standard
    Webhooks; the signing `secret` (`whsec_…`) is shown this once. 422 `invalid_webhook_url`; 409
    `too_many_endpoints` (20)."""
    endpoint, secret = services.endpoint_create(
        tenant_id=_tenant(request).id,
        url=payload.url,
        event_types=list(payload.event_types),
        description=payload.description,
        headers=payload.headers,
        is_active=payload.is_active,
    )
    return Status(201, {**endpoint_data(endpoint), "secret": secret})


@router.get(
    "/endpoints/{endpoint_id}",
    response={200: EndpointOut, **error_responses(404)},
    operation_id="webhooks_endpoint_get",
    summary="Get a webhook endpoint",
)
def endpoint_get(request: HttpRequest, endpoint_id: str) -> dict[str, Any]:
    """One webhook endpoint by id, with its state (`is_active`, and why it was disabled); 404
    `endpoint_not_found`."""
    return endpoint_data(
        selectors.endpoint_get(tenant_id=_tenant(request).id, endpoint_id=endpoint_id)
    )


@router.patch(
    "/endpoints/{endpoint_id}",
    response={200: EndpointOut, **error_responses(404)},
    operation_id="webhooks_endpoint_update",
    summary="Change a webhook endpoint (is_active true re-enables a disabled one)",
)
def endpoint_update(
    request: HttpRequest, endpoint_id: str, payload: EndpointPatch
) -> dict[str, Any]:
    """Change the fields given; `is_active` true re-enables an endpoint disabled after failing
    deliveries."""
    endpoint = selectors.endpoint_get(tenant_id=_tenant(request).id, endpoint_id=endpoint_id)
    changes = {k: v for k, v in payload.dict(exclude_unset=True).items() if v is not None}
    return endpoint_data(services.endpoint_update(endpoint=endpoint, **changes))


@router.delete(
    "/endpoints/{endpoint_id}",
    response={204: None, **error_responses(404)},
    operation_id="webhooks_endpoint_delete",
    summary="Delete a webhook endpoint",
)
def endpoint_delete(request: HttpRequest, endpoint_id: str) -> HttpResponse:
    """Delete a webhook endpoint; no further event is sent to it. Answers 204; 404
    `endpoint_not_found`."""
    endpoint = selectors.endpoint_get(tenant_id=_tenant(request).id, endpoint_id=endpoint_id)
    services.endpoint_delete(endpoint=endpoint)
    return HttpResponse(status=204)


@router.post(
    "/endpoints/{endpoint_id}/rotate-secret",
    response={200: EndpointWithSecretOut, **error_responses(404)},
    operation_id="webhooks_endpoint_rotate_secret",
    summary="Rotate the signing secret (both are used for 24 hours)",
)
def endpoint_rotate(request: HttpRequest, endpoint_id: str) -> dict[str, Any]:
    """A new signing secret, shown this once; deliveries are signed with both the old and the new
    secret for 24 hours, so receivers can switch without missing one."""
    endpoint = selectors.endpoint_get(tenant_id=_tenant(request).id, endpoint_id=endpoint_id)
    endpoint, secret = services.endpoint_rotate_secret(endpoint=endpoint)
    return {**endpoint_data(endpoint), "secret": secret}


@router.post(
    "/endpoints/{endpoint_id}/test",
    response={202: AcceptedOut, **error_responses(404)},
    operation_id="webhooks_endpoint_test",
    summary="Send a webhook.test event to this endpoint",
)
def endpoint_test(request: HttpRequest, endpoint_id: str) -> Status:
    """Send a `webhook.test` event to this endpoint only, whatever its `event_types`; it is recorded
    and listed like any event. Answers 202; the delivery follows."""
    endpoint = selectors.endpoint_get(tenant_id=_tenant(request).id, endpoint_id=endpoint_id)
    event = services.endpoint_test(endpoint=endpoint)
    return Status(
        202, {"status": "accepted", "event_id": event.pk, "queued": 1 if endpoint.is_active else 0}
    )


@router.get(
    "/events",
    response={200: EventPage, **error_responses()},
    operation_id="webhooks_event_list",
    summary="Events, newest first (written only while an endpoint subscribes to the type)",
)
def event_list(
    request: HttpRequest, page: Query[PageParams], type: str | None = None
) -> dict[str, Any]:
    """Events, newest first, exactly as webhooks deliver them; `type` filters. Events are written
    only while an endpoint subscribes to their type."""
    tenant = _tenant(request)
    result = paginate(
        selectors.event_list(tenant_id=tenant.id, type=type),
        limit=page.limit,
        cursor=page.cursor,
    )
    return {
        "items": [event_data(e, tenant.slug) for e in result.items],
        "next_cursor": result.next_cursor,
    }


@router.get(
    "/deliveries",
    response={200: DeliveryPage, **error_responses()},
    operation_id="webhooks_delivery_list",
    summary="Deliveries, newest first",
)
def delivery_list(
    request: HttpRequest,
    page: Query[PageParams],
    endpoint_id: str | None = None,
    status: str | None = None,
    event_id: str | None = None,
) -> dict[str, Any]:
    """Deliveries of events to endpoints, newest first, with status, attempts and the last error;
    `endpoint_id`, `event_id` and `status` filter."""
    result = paginate(
        selectors.delivery_list(
            tenant_id=_tenant(request).id,
            endpoint_id=endpoint_id,
            status=status,
            event_id=event_id,
        ),
        limit=page.limit,
        cursor=page.cursor,
    )
    return page_data(result, delivery_data)


@router.post(
    "/events/{event_id}/redeliver",
    response={202: AcceptedOut, **error_responses(404)},
    operation_id="webhooks_event_redeliver",
    summary="Send an event again, to every subscribed endpoint or to one",
)
def event_redeliver(request: HttpRequest, event_id: str, payload: RedeliverIn) -> Status:
    """Deliver an event again, to every endpoint subscribed to its type or to `endpoint_id` only.
    Answers 202; 404 for an unknown event or endpoint."""
    tenant = _tenant(request)
    event = selectors.event_get(tenant_id=tenant.id, event_id=event_id)
    endpoint = None
    if payload.endpoint_id:
        endpoint = selectors.endpoint_get(tenant_id=tenant.id, endpoint_id=payload.endpoint_id)
    queued = services.event_redeliver(event=event, endpoint=endpoint)
    return Status(202, {"status": "accepted", "event_id": event.pk, "queued": queued})
