from __future__ import annotations

import json
import os
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from billing_platform.operations.services import demo_customer_ensure, platform_tenant_onboard
from tenants.models import Tenant

DEMO_SLUG = "demo"


class Command(BaseCommand):
    help = "Create the `demo` tenant with the demo catalog if it is absent; print its key once."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--json",
            action="store_true",
            help='one JSON line instead of text: {"tenant", "created", "key" (null when it '
            "existed)} (make run reads it)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        existing = Tenant.objects.filter(slug=DEMO_SLUG).first()
        if existing is not None:
            demo_customer_ensure(existing)
            if options["json"]:
                self._json(created=False, key=None)
                return
            self.stdout.write(
                "Demo tenant `demo` exists (its key was printed when it was created; make another "
                "with: .venv/bin/python manage.py create_api_key --tenant demo --name NAME)."
            )
            return
        # The first tenant of a new database: no spare schema exists yet, so it is built.
        first = not Tenant.objects.exists()
        tenant, _key, raw = platform_tenant_onboard(
            name="Demo", slug=DEMO_SLUG, demo_catalog=True, expect_build=first
        )
        demo_customer_ensure(tenant)
        if options["json"]:
            self._json(created=True, key=raw)
            return
        port = os.environ.get("PORT") or "8000"
        self.stdout.write(
            "Created the demo tenant `demo`. Its API key (shown this once):\n\n"
            f"    {raw}\n\n"
            f"Try: curl -H 'X-API-Key: {raw}' http://127.0.0.1:{port}/api/v1/keys"
        )

    def _json(self, *, created: bool, key: str | None) -> None:
        self.stdout.write(json.dumps({"tenant": DEMO_SLUG, "created": created, "key": key}))
