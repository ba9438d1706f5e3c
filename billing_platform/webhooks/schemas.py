"""Shapes of the webhook endpoints API."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from ninja import Field

from billing_platform.core.schema_types import Schema
from billing_platform.webhooks.events import EVENT_TYPES

EventTypeName = Literal[EVENT_TYPES]  # type: ignore[valid-type]


class EndpointIn(Schema):
    url: str = Field(..., min_length=1, max_length=2000)
    event_types: list[EventTypeName] = Field(
        default_factory=list, description="Empty means every event type."
    )
    description: str = Field("", max_length=500)
    headers: dict[str, str] = Field(
        default_factory=dict, description="Static headers sent with every delivery."
    )
    is_active: bool = True


class EndpointPatch(Schema):
    url: str | None = Field(None, min_length=1, max_length=2000)
    event_types: list[EventTypeName] | None = None
    description: str | None = Field(None, max_length=500)
    headers: dict[str, str] | None = None
    is_active: bool | None = None


class EndpointOut(Schema):
    id: str
    url: str
    description: str
    event_types: list[str]
    headers: dict[str, str] = Field(..., description="Header names with masked values.")
    is_active: bool
    disabled_at: datetime | None
    disabled_reason: str
    created_at: datetime


class EndpointWithSecretOut(EndpointOut):
    secret: str = Field(..., description="The signing secret (whsec_…); shown only here.")


class EndpointPage(Schema):
    items: list[EndpointOut]
    next_cursor: str | None


class EventOut(Schema):
    id: str
    type: str
    created_at: datetime
    tenant: str
    data: dict[str, Any]


class EventPage(Schema):
    items: list[EventOut]
    next_cursor: str | None


class DeliveryOut(Schema):
    id: str
    event_id: str
    endpoint_id: str
    status: Literal["pending", "succeeded", "failed"]
    attempts: int
    next_attempt_at: datetime | None
    last_status_code: int | None
    last_error: str


class DeliveryPage(Schema):
    items: list[DeliveryOut]
    next_cursor: str | None


class RedeliverIn(Schema):
    endpoint_id: str | None = None


class AcceptedOut(Schema):
    status: Literal["accepted"]
    event_id: str
    queued: int
