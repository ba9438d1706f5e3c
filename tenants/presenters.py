"""Public-schema rows as the plain data the API answers with."""

from __future__ import annotations

from typing import Any

from tenants.models import ApiKey


def api_key_data(key: ApiKey) -> dict[str, Any]:
    """A key's public metadata (never its hash)."""
    return {
        "id": str(key.pk),
        "name": key.name,
        "prefix": key.prefix,
        "scopes": key.scopes,
        "created_at": key.created_at,
        "last_used_at": key.last_used_at,
        "expires_at": key.expires_at,
        "revoked_at": key.revoked_at,
    }
