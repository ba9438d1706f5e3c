"""Ids from URLs and bodies: a malformed id is simply unknown."""

from __future__ import annotations

import uuid


def uuid_or_none(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(value))
    except ValueError:
        return None
