"""The one NinjaAPI: routers of every app, the error renderer, the OpenAPI schema."""

from __future__ import annotations

from typing import Any

from ninja import NinjaAPI

from billing_platform.problems import JsonParser, install_handlers, rewrite_error_content_types
from tenants.api import keys_router, platform_router


class BillableAPI(NinjaAPI):
    def get_openapi_schema(self, *args: Any, **kwargs: Any) -> Any:
        schema = super().get_openapi_schema(*args, **kwargs)
        return rewrite_error_content_types(schema)


api = BillableAPI(
    title="Billable API",
    version="1.0.0",
    description=(
        "Multi-tenant entitlements, quota and billing. Authenticate with a tenant key "
        "(`Authorization: Bearer bk_…` or `X-API-Key: bk_…`); `/platform` takes a platform key. "
        "Every error is `application/problem+json` with a stable `code`."
    ),
    urls_namespace="api",
    docs_url="/docs",
    openapi_url="/openapi.json",
    parser=JsonParser(),
)
install_handlers(api)

api.add_router("/platform", platform_router)
api.add_router("/keys", keys_router)
