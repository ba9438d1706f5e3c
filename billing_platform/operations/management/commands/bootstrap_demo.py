from __future__ import annotations

import os
from typing import Any

from django.core.management.base import BaseCommand

from billing_platform.operations.services import demo_customer_ensure, platform_tenant_onboard
from tenants.models import Tenant

DEMO_SLUG = "demo"


class Command(BaseCommand):
    help = "Create the `demo` tenant with the demo catalog if it is absent; print its key once."

    def handle(self, *args: Any, **options: Any) -> None:
        existing = Tenant.objects.filter(slug=DEMO_SLUG).first()
        if existing is not None:
            demo_customer_ensure(existing)
            self.stdout.write(
                "Demo tenant `demo` exists (its key was printed when it was created; make another "
                "with: .venv/bin/python manage.py create_api_key --tenant demo --name NAME)."
            )
            return
        tenant, _key, raw = platform_tenant_onboard(name="Demo", slug=DEMO_SLUG, demo_catalog=True)
        demo_customer_ensure(tenant)
        port = os.environ.get("PORT") or "8000"
        self.stdout.write(
            "Created the demo tenant `demo`. Its API key (shown this once):\n\n"
            f"    {raw}\n\n"
            f"Try: curl -H 'X-API-Key: {raw}' http://127.0.0.1:{port}/api/v1/keys"
        )
