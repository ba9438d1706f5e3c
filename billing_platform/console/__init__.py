"""The tenant console: a web app under /console/ where a tenant's team sees and runs its billing.

Rooms, top to bottom (docs/architecture.md): `urls` → `views` → `forms` → `access` (who is
signed in, which tenant, may they) → `services` (every console write, with its audit entry) →
`selectors` → `permissions` (roles and what each may do) → `models`.
"""
