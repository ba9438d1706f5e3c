"""The one NinjaAPI: routers of every app, the error renderer, the OpenAPI schema."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from ninja import NinjaAPI

from billable.api import router as billing_router
from billable.api import settings_router
from billable.api.public_catalog import router as public_catalog_router
from billing_platform.core.jsonbody import JsonParser
from billing_platform.core.problems import rewrite_error_content_types
from billing_platform.core.renderer import OrjsonRenderer
from billing_platform.http.handlers import install_handlers
from billing_platform.http.openapi import explain
from billing_platform.http.pipeline import transactional_posts
from billing_platform.operations.api import platform_router
from billing_platform.webhooks.api import router as webhooks_router
from tenants.api import keys_router, signup_router

API_ROOT = "/api/v1"
# The routers whose POSTs `transactional_posts` wraps: they take an `Idempotency-Key`.
IDEMPOTENT_MOUNTS = ("/billing", "/keys", "/webhooks")


class BillableAPI(NinjaAPI):
    def get_openapi_schema(self, *args: Any, **kwargs: Any) -> Any:
        schema = super().get_openapi_schema(*args, **kwargs)
        if not settings.PLATFORM_OPEN_SIGNUP:  # a closed signup is an absent route
            for path in [p for p in schema["paths"] if p.endswith("/public/signup")]:
                del schema["paths"][path]
        return explain(
            rewrite_error_content_types(schema),
            idempotent_prefixes=tuple(API_ROOT + prefix for prefix in IDEMPOTENT_MOUNTS),
            unlimited_prefixes=(API_ROOT + "/platform",),
        )


api = BillableAPI(
    title="Billable API",
    version="1.0.0",
    description=(
        "Multi-tenant entitlements, quota and billing. Authenticate with a tenant key "
        "(`Authorization: Bearer bk_…` or `X-API-Key: bk_…`); `/platform` takes a platform key. "
        "Every error is `application/problem+json` with a stable `code`. Tenant POSTs take an "
        "`Idempotency-Key` header that makes retries safe. The examples name the demo catalog "
        "that `make run` installs and its demo customer, Telegram user `1001`: authorize with "
        "the demo tenant's key and \"Try it out\" answers as shown."
    ),
    urls_namespace="api",
    docs_url="/docs",
    openapi_url="/openapi.json",
    parser=JsonParser(),
    renderer=OrjsonRenderer(),
)
install_handlers(api)

api.add_router("/billing", transactional_posts(billing_router, body_field=True))
api.add_router("/settings", settings_router)
# A stored answer to POST /keys holds a new key's secret: it replays to the key that made it only.
api.add_router("/keys", transactional_posts(keys_router, body_field=False, per_caller=True))
api.add_router("/webhooks", transactional_posts(webhooks_router, body_field=False))
api.add_router("/platform", platform_router)
api.add_router("/public", public_catalog_router)
api.add_router("/public", signup_router)
