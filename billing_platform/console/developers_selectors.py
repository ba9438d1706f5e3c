"""Reads of the developers pages: the tenant's API keys, webhook endpoints and delivery log.

Everything is looked up with the tenant the console resolved, through the same selectors the
API uses (`tenants.selectors`, `webhooks.selectors`), so another tenant's key, endpoint or
delivery is a 404 like an unknown one.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from django.db.models import Prefetch, QuerySet

from billable import clock
from billing_platform.core import crypto
from billing_platform.core.errors import NotFound
from billing_platform.core.pagination import Page, paginate
from billing_platform.webhooks import selectors as webhooks
from billing_platform.webhooks.delivery import event_body
from billing_platform.webhooks.models import Delivery, DeliveryAttempt, Endpoint
from tenants import selectors as tenants
from tenants.models import ApiKey, Tenant

KEYS_PAGE = 25
DELIVERIES_PAGE = 25
DELIVERY_ORDER = ("-created_at", "-pk")


class DeliveryNotFound(NotFound):
    code = "delivery_not_found"
    title = "No such delivery"


# --- API keys


def keys_page(*, tenant: Tenant, cursor: str | None = None) -> Page[ApiKey]:
    """The tenant's keys, newest first (revoked ones too), a page at a time (by the tenant's
    foreign-key index: a tenant holds at most 50 active keys)."""
    return paginate(
        tenants.api_key_list(tenant_id=tenant.pk),
        limit=KEYS_PAGE,
        cursor=cursor,
        order=("-created_at", "-pk"),
    )


def key_get(*, tenant: Tenant, key_id: str) -> ApiKey:
    return tenants.api_key_get(tenant_id=tenant.pk, key_id=key_id)


def key_status(key: ApiKey) -> str:
    """`revoked`, `expired` or `active`: whether the API accepts the key now."""
    if key.revoked_at is not None:
        return "revoked"
    if key.expires_at is not None and key.expires_at <= clock.now():
        return "expired"
    return "active"


# --- Webhook endpoints


def endpoints(*, tenant: Tenant) -> list[Endpoint]:
    """Every endpoint of the tenant, newest first (at most WEBHOOK_MAX_ENDPOINTS)."""
    return list(webhooks.endpoint_list(tenant_id=tenant.pk).order_by("-created_at", "-pk"))


def endpoint_get(*, tenant: Tenant, endpoint_id: str) -> Endpoint:
    return webhooks.endpoint_get(tenant_id=tenant.pk, endpoint_id=endpoint_id)


def endpoint_header_names(endpoint: Endpoint) -> list[str]:
    """The names of its custom headers (their values are secrets, never shown)."""
    if not endpoint.headers_encrypted:
        return []
    return list(crypto.decrypt_json(endpoint.headers_encrypted))


# --- The delivery log


def deliveries_matching(
    *, endpoint: Endpoint, status: str = "", event_type: str = ""
) -> QuerySet[Delivery]:
    """One endpoint's deliveries (the API's `delivery_list`), of one status and event type."""
    queryset = webhooks.delivery_list(
        tenant_id=endpoint.tenant_id, endpoint_id=str(endpoint.pk), status=status or None
    ).select_related("event")
    if event_type:
        queryset = queryset.filter(event__type=event_type)
    return queryset


def deliveries_page(
    *, endpoint: Endpoint, status: str = "", event_type: str = "", cursor: str | None = None
) -> Page[Delivery]:
    """One endpoint's deliveries, newest first, a page at a time.

    Read along `delivery_endpoint_recent_idx` (or `delivery_endpoint_status_idx` for a status):
    a page costs the same whatever the number of deliveries. Raises ValidationFailed for a
    cursor this list did not issue.
    """
    return paginate(
        deliveries_matching(endpoint=endpoint, status=status, event_type=event_type),
        limit=DELIVERIES_PAGE,
        cursor=cursor,
        order=DELIVERY_ORDER,
    )


def delivery_get(*, tenant: Tenant, delivery_id: str) -> Delivery:
    """A delivery of one of the tenant's endpoints, with its event, endpoint and attempts."""
    try:
        key = uuid.UUID(delivery_id)
    except ValueError:
        raise DeliveryNotFound() from None
    delivery = (
        Delivery.objects.filter(pk=key, endpoint__tenant_id=tenant.pk)
        .select_related("event", "endpoint")
        .prefetch_related(
            Prefetch(
                "attempt_log",
                queryset=DeliveryAttempt.objects.order_by("-attempted_at", "-id"),
            )
        )
        .first()
    )
    if delivery is None:
        raise DeliveryNotFound()
    return delivery


@dataclass(frozen=True)
class AttemptView:
    """One attempt as its page shows it: the request as sent and the answer."""

    attempt: DeliveryAttempt
    request_headers: list[tuple[str, str]]
    response_headers: list[tuple[str, str]]

    @property
    def sent(self) -> bool:
        return bool(self.request_headers)


def attempt_views(delivery: Delivery) -> list[AttemptView]:
    views = []
    for attempt in delivery.attempt_log.all():
        sent: dict[str, Any] = attempt.request_headers or {}
        views.append(
            AttemptView(
                attempt=attempt,
                request_headers=[(str(k), str(v)) for k, v in sent.items()],
                response_headers=[
                    (str(pair[0]), str(pair[1]))
                    for pair in attempt.response_headers or []
                    if isinstance(pair, list | tuple) and len(pair) == 2
                ],
            )
        )
    return views


def delivery_body(delivery: Delivery, tenant: Tenant) -> str:
    """The body every attempt of the delivery posts: the event object, as the worker builds it."""
    return event_body(delivery.event, tenant.slug)
