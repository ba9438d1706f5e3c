"""The console's rows, all in the public schema: who belongs to which tenant, invitations, the
audit log, and the idempotency keys of console forms.

No tenant-schema table refers to these (Citus readiness: no key from a tenant table to a public
one); they refer to `tenants.Tenant` and `auth.User`, which live beside them.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models


class Role(models.TextChoices):
    """A member's role in one tenant (`console.permissions` says what each may do)."""

    OWNER = "owner", "Owner"
    ADMIN = "admin", "Admin"
    SUPPORT = "support", "Support"
    VIEWER = "viewer", "Viewer"


class Membership(models.Model):
    """A person's place in a tenant's team, with one role."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="console_memberships"
    )
    tenant = models.ForeignKey(
        "tenants.Tenant", on_delete=models.CASCADE, related_name="console_memberships"
    )
    role = models.CharField(max_length=16, choices=Role.choices)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ("tenant__name", "id")
        constraints = [
            models.UniqueConstraint(fields=["user", "tenant"], name="membership_unique"),
            models.CheckConstraint(
                condition=models.Q(role__in=Role.values), name="membership_role_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.user} in {self.tenant} ({self.role})"


class Invitation(models.Model):
    """An invitation to join a tenant's team; only a hash of its link's token is kept."""

    tenant = models.ForeignKey(
        "tenants.Tenant", on_delete=models.CASCADE, related_name="console_invitations"
    )
    email = models.EmailField()  # lowercased
    role = models.CharField(max_length=16, choices=Role.choices)
    token_hash = models.CharField(max_length=64, unique=True)
    expires_at = models.DateTimeField()
    accepted_at = models.DateTimeField(null=True, blank=True)
    accepted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    # None: invited by the platform's operator (`manage.py console_invite`).
    invited_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [models.Index(fields=["tenant", "-created_at"], name="invitation_tenant_recent")]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(role__in=Role.values), name="invitation_role_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.email} to {self.tenant} ({self.role})"


class AuditEntry(models.Model):
    """One thing a person did in a tenant's console, written in the action's own transaction."""

    tenant = models.ForeignKey(
        "tenants.Tenant", on_delete=models.CASCADE, related_name="console_audit_entries"
    )
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    # Who, as shown then (the email), kept when the account is gone; "operator" for commands.
    actor = models.CharField(max_length=254)
    action = models.CharField(max_length=64)  # `customer.grant`, `invitation.created`, ...
    target = models.CharField(max_length=255, blank=True, default="")
    detail = models.JSONField(default=dict, blank=True)
    ip = models.GenericIPAddressField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [
            models.Index(fields=["tenant", "-created_at", "-id"], name="audit_tenant_recent"),
            # The audit log page's filters, each newest first (migration 0003).
            models.Index(
                fields=["tenant", "action", "-created_at", "-id"], name="audit_tenant_action"
            ),
            models.Index(
                fields=["tenant", "actor", "-created_at", "-id"], name="audit_tenant_actor"
            ),
            models.Index(
                fields=["tenant", "target", "-created_at", "-id"], name="audit_tenant_target"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.actor}: {self.action} {self.target}"


class Submission(models.Model):
    """The idempotency key of one console form, claimed in the transaction of its action.

    A second submission of the same form (a double click, a reload) finds the row and shows the
    first one's `outcome` instead of acting again.
    """

    tenant = models.ForeignKey(
        "tenants.Tenant", on_delete=models.CASCADE, related_name="console_submissions"
    )
    key = models.CharField(max_length=64)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    action = models.CharField(max_length=64)
    outcome = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["tenant", "key"], name="submission_unique"),
        ]
        indexes = [models.Index(fields=["tenant", "created_at"], name="submission_tenant_age")]


class SupportSession(models.Model):
    """An operator's time-limited entry into one tenant's console, opened from the admin.

    While it runs (not ended, not expired) the operator's browser session uses that tenant's
    console as a `support` member, and every action it takes is audited as `operator:<id>`.
    """

    operator = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        on_delete=models.SET_NULL,
        related_name="console_support_sessions",
    )
    operator_name = models.CharField(max_length=254)  # as shown then, kept when the account goes
    tenant = models.ForeignKey(
        "tenants.Tenant", on_delete=models.CASCADE, related_name="console_support_sessions"
    )
    reason = models.TextField()
    started_at = models.DateTimeField()
    expires_at = models.DateTimeField()
    ended_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["tenant", "-started_at"], name="support_tenant_recent")]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(expires_at__gt=models.F("started_at")),
                name="support_expires_after_start",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.operator_name} in {self.tenant} until {self.expires_at:%Y-%m-%d %H:%M}"
