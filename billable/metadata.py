"""The one limit on `metadata` objects: 16 KiB of compact UTF-8 JSON, as stored.

The request schemas refuse a body's object over the limit (422 `validation_error`); the services
that combine objects (identify's shallow merge, a customer merge, a product's mirrored features)
check what they are about to store (422 `metadata_too_large`).
"""

from __future__ import annotations

import json
from typing import Any

from billable import errors

MAX_METADATA_BYTES = 16 * 1024


def metadata_bytes(value: Any) -> int:
    """The UTF-8 bytes of compact JSON, so a non-ASCII text counts what it stores."""
    encoded = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    return len(encoded.encode("utf-8", "surrogatepass"))


def metadata_check(value: dict[str, Any], *, before: dict[str, Any] | None = None) -> None:
    """Refuse to store `value` over the limit (422 `metadata_too_large`).

    An object already stored over the limit (written before the limit held for the total)
    may still shrink: only a write that leaves it over the limit and larger is refused.
    """
    size = metadata_bytes(value)
    if size <= MAX_METADATA_BYTES:
        return
    if before is not None and size < metadata_bytes(before):
        return
    raise errors.MetadataTooLarge(
        f"The metadata would be {size} bytes of JSON; the limit is {MAX_METADATA_BYTES}.",
        limit=MAX_METADATA_BYTES,
        size=size,
    )
