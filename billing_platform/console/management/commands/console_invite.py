from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from billing_platform.console.models import Role
from billing_platform.console.services import Actor, invitation_send
from billing_platform.core.errors import BillingError
from tenants.models import Tenant, TenantStatus


class Command(BaseCommand):
    help = (
        "Invite someone to a tenant's console team (the first owner, typically); prints the "
        "invitation link once, and mails it when EMAIL_URL is set."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("slug", help="the tenant's slug")
        parser.add_argument("email")
        parser.add_argument("--role", choices=Role.values, default=Role.OWNER)
        parser.add_argument(
            "--base-url",
            default=None,
            help="where the console is reached (default: CONSOLE_BASE_URL)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        tenant = Tenant.objects.filter(
            slug=options["slug"], status__in=[TenantStatus.ACTIVE, TenantStatus.SUSPENDED]
        ).first()
        if tenant is None:
            raise CommandError(f"No tenant has the slug {options['slug']!r}.")
        try:
            invitation, link = invitation_send(
                actor=Actor(tenant=tenant, user=None),
                email=options["email"],
                role=options["role"],
                base_url=options["base_url"] or settings.CONSOLE_BASE_URL,
            )
        except BillingError as exc:
            raise CommandError(f"{exc.code}: {exc.detail}") from exc
        self.stdout.write(
            f"Invited {invitation.email} to {tenant.name} as {invitation.role}, until "
            f"{invitation.expires_at:%Y-%m-%d %H:%M} UTC. The link (shown only now):\n{link}"
        )
