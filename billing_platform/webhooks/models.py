"""Public-schema tables of the webhook outbox."""

from __future__ import annotations

import secrets
import uuid

from django.db import models
from django.db.models import Q

from tenants.models import Tenant


def new_event_id() -> str:
    return "evt_" + secrets.token_hex(12)


class Endpoint(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="webhook_endpoints")
    url = models.URLField(max_length=2000)
    description = models.CharField(max_length=500, blank=True, default="")
    event_types = models.JSONField(default=list, blank=True)  # empty: every type
    headers_encrypted = models.TextField(blank=True, default="")
    secret_encrypted = models.TextField()
    previous_secret_encrypted = models.TextField(blank=True, default="")
    previous_secret_expires_at = models.DateTimeField(null=True, blank=True)
    is_active = models.BooleanField(default=True)
    disabled_at = models.DateTimeField(null=True, blank=True)
    disabled_reason = models.CharField(max_length=200, blank=True, default="")
    consecutive_failures = models.PositiveIntegerField(default=0)
    failing_since = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ("-created_at",)
        verbose_name = "webhook endpoint"
        verbose_name_plural = "webhook endpoints"

    def __str__(self) -> str:
        return self.url if self.is_active else f"{self.url} (disabled)"

    def subscribes_to(self, event_type: str) -> bool:
        return not self.event_types or event_type in self.event_types


class Event(models.Model):
    """One billing event of one tenant, exactly the body every delivery posts."""

    id = models.CharField(primary_key=True, max_length=40, default=new_event_id, editable=False)
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="webhook_events")
    type = models.CharField(max_length=40)
    data = models.JSONField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ("-created_at",)
        indexes = [models.Index(fields=["tenant", "-created_at"], name="event_tenant_idx")]
        verbose_name = "webhook event"
        verbose_name_plural = "webhook events"

    def __str__(self) -> str:
        return f"{self.type} {self.id}"


class DeliveryStatus(models.TextChoices):
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class Delivery(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    event = models.ForeignKey(Event, on_delete=models.CASCADE, related_name="deliveries")
    endpoint = models.ForeignKey(Endpoint, on_delete=models.CASCADE, related_name="deliveries")
    status = models.CharField(
        max_length=16, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING
    )
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    locked_until = models.DateTimeField(null=True, blank=True)
    last_status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    last_error = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ("-created_at",)
        indexes = [
            models.Index(
                fields=["next_attempt_at"], name="delivery_due_idx", condition=Q(status="pending")
            ),
            # The console's delivery log: an endpoint's deliveries newest first, of one status.
            models.Index(
                fields=["endpoint", "-created_at", "-id"], name="delivery_endpoint_recent_idx"
            ),
            models.Index(
                fields=["endpoint", "status", "-created_at", "-id"],
                name="delivery_endpoint_status_idx",
            ),
        ]
        verbose_name = "webhook delivery"
        verbose_name_plural = "webhook deliveries"

    def __str__(self) -> str:
        # The admin selects the event and the endpoint with the delivery (list_select_related).
        return f"{self.event.type} to {self.endpoint.url}: {self.status}"


class DeliveryAttempt(models.Model):
    id = models.BigAutoField(primary_key=True)
    delivery = models.ForeignKey(Delivery, on_delete=models.CASCADE, related_name="attempt_log")
    attempted_at = models.DateTimeField(auto_now_add=True)
    duration_ms = models.PositiveIntegerField(default=0)
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    response_body = models.TextField(blank=True, default="")
    error = models.TextField(blank=True, default="")
    # The request as sent (custom header values masked) and the answer's headers, as
    # [name, value] pairs in the order received; empty when nothing was sent.
    request_url = models.TextField(blank=True, default="")
    request_headers = models.JSONField(default=dict, blank=True)
    response_headers = models.JSONField(default=list, blank=True)

    class Meta:
        ordering = ("-attempted_at",)
        verbose_name = "delivery attempt"
        verbose_name_plural = "delivery attempts"

    def __str__(self) -> str:
        answer = f"HTTP {self.status_code}" if self.status_code else ""
        outcome = answer or self.error[:80] or "no answer"
        when = f"{self.attempted_at:%Y-%m-%d %H:%M:%S} UTC" if self.attempted_at else "not yet"
        return f"{when}: {outcome}"
