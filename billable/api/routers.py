"""The two routers every billing endpoint module decorates, and the scopes they require.

One `Router` per URL prefix, not one per module: the operations keep the order in which
`billable.api` imports their modules (the OpenAPI document lists them so), and
`transactional_posts` wraps every POST of `router` when it is mounted.
"""

from __future__ import annotations

from ninja import Router

from tenants.auth import tenant_auth

router = Router(tags=["billing"])
settings_router = Router(tags=["settings"], auth=tenant_auth("admin"))

READ = tenant_auth("billing:read")
WRITE = tenant_auth("billing:write")
GRANT = tenant_auth("billing:grant")
ADMIN = tenant_auth("admin")
