"""The operators' view of webhooks: endpoints (secrets never shown), events, deliveries.

Every row is read-only here; the writes are actions through the services, offered only to
operators holding the model's change permission: "Redeliver" (services.event_redeliver) and
"Disable" / "Re-enable" of endpoints (services.endpoint_update, as `PATCH
/webhooks/endpoints/{id}` with `is_active`).
"""

from __future__ import annotations

import json
from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html

from billing_platform.core import crypto
from billing_platform.webhooks import services
from billing_platform.webhooks.models import Delivery, DeliveryAttempt, Endpoint, Event


class _ReadOnly(admin.ModelAdmin):
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_operate_permission(self, request: HttpRequest) -> bool:
        """The actions write: they need the model's change permission, which a viewer lacks.

        Checked against the user's permissions, not `has_change_permission`, which is False for
        everyone so that the rows themselves stay read-only.
        """
        opts = self.opts
        return request.user.has_perm(f"{opts.app_label}.change_{opts.model_name}")


@admin.register(Endpoint)
class EndpointAdmin(_ReadOnly):
    list_display = (
        "url",
        "tenant",
        "is_active",
        "subscribed_types",
        "masked_headers",
        "consecutive_failures",
        "disabled_at",
        "disabled_reason",
        "created_at",
    )
    list_filter = ("is_active",)
    list_select_related = ("tenant",)
    search_fields = ("url", "description", "tenant__slug")
    fields = (
        "id",
        "tenant",
        "url",
        "description",
        "subscribed_types",
        "masked_headers",
        "is_active",
        "disabled_at",
        "disabled_reason",
        "consecutive_failures",
        "failing_since",
        "previous_secret_expires_at",
        "created_at",
    )
    readonly_fields = fields

    actions = ("disable_endpoints", "enable_endpoints")

    @admin.action(description="Disable selected endpoints", permissions=["operate"])
    def disable_endpoints(self, request: HttpRequest, queryset: QuerySet[Endpoint]) -> None:
        self._set_active(request, queryset, active=False)

    @admin.action(description="Re-enable selected endpoints", permissions=["operate"])
    def enable_endpoints(self, request: HttpRequest, queryset: QuerySet[Endpoint]) -> None:
        self._set_active(request, queryset, active=True)

    def _set_active(
        self, request: HttpRequest, queryset: QuerySet[Endpoint], *, active: bool
    ) -> None:
        changed = 0
        for endpoint in queryset.filter(is_active=not active):
            services.endpoint_update(endpoint=endpoint, is_active=active)
            self.log_change(request, endpoint, [{"changed": {"fields": ["is_active"]}}])
            changed += 1
        verb = "Re-enabled" if active else "Disabled"
        self.message_user(request, f"{verb} {changed} endpoint(s).", messages.SUCCESS)

    @admin.display(description="event types")
    def subscribed_types(self, obj: Endpoint) -> str:
        return ", ".join(obj.event_types) or "all"

    @admin.display(description="headers")
    def masked_headers(self, obj: Endpoint) -> str:
        names = crypto.decrypt_json(obj.headers_encrypted)
        return ", ".join(f"{name}: ••••" for name in names) or "—"


def _redeliver(
    modeladmin: admin.ModelAdmin, request: HttpRequest, pairs: list[tuple[Event, Endpoint | None]]
) -> None:
    queued = sum(services.event_redeliver(event=event, endpoint=ep) for event, ep in pairs)
    modeladmin.message_user(request, f"Queued {queued} delivery(ies).", messages.SUCCESS)


@admin.register(Event)
class EventAdmin(_ReadOnly):
    list_display = ("id", "type", "tenant", "created_at")
    list_filter = ("type",)
    list_select_related = ("tenant",)
    search_fields = ("id", "tenant__slug")
    fields = ("id", "type", "tenant", "created_at", "pretty_data")
    readonly_fields = fields
    actions = ("redeliver",)

    @admin.display(description="data")
    def pretty_data(self, obj: Event) -> str:
        return format_html("<pre>{}</pre>", json.dumps(obj.data, indent=2, ensure_ascii=False))

    @admin.action(description="Redeliver to every subscribed endpoint", permissions=["operate"])
    def redeliver(self, request: HttpRequest, queryset: QuerySet[Event]) -> None:
        _redeliver(self, request, [(event, None) for event in queryset])


class AttemptInline(admin.TabularInline):
    model = DeliveryAttempt
    fields = (
        "attempted_at",
        "duration_ms",
        "request_url",
        "request_headers",
        "status_code",
        "response_headers",
        "error",
        "response_body",
    )
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Delivery)
class DeliveryAdmin(_ReadOnly):
    list_display = (
        "id",
        "event",
        "endpoint",
        "status",
        "attempts",
        "last_status_code",
        "next_attempt_at",
        "updated_at",
    )
    list_filter = ("status",)
    list_select_related = ("event", "endpoint")
    search_fields = ("event__id", "endpoint__url")
    fields = (
        "id",
        "event",
        "endpoint",
        "status",
        "attempts",
        "next_attempt_at",
        "locked_until",
        "last_status_code",
        "last_error",
        "created_at",
        "updated_at",
    )
    readonly_fields = fields
    inlines = (AttemptInline,)
    actions = ("redeliver",)

    def get_queryset(self, request: HttpRequest) -> QuerySet[Delivery]:
        # A delivery names itself by its event's type and its endpoint (Delivery.__str__).
        return super().get_queryset(request).select_related("event", "endpoint")

    @admin.action(description="Redeliver to the same endpoint", permissions=["operate"])
    def redeliver(self, request: HttpRequest, queryset: QuerySet[Delivery]) -> None:
        rows = queryset.select_related("event", "endpoint")
        _redeliver(self, request, [(d.event, d.endpoint) for d in rows])
