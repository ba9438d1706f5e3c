"""Idempotency keys of tenant POSTs: read the key, claim it, replay or settle its answer.

The record lives in the tenant's schema (`billable_idempotencyrecord`, unique on `key`) and is
written inside the request's outermost transaction, so it commits with the effect or not at all:

The statements name the tenant's schema, so they need no `SET search_path` round trip.

- `claim` inserts the record (`ON CONFLICT DO NOTHING`); a concurrent request with the same key
  blocks on the unique index until the first commits, then replays its stored answer (byte for
  byte, `Idempotent-Replayed: true`); the same key for another request is 422
  `idempotency_key_reused`; a first request still running after `lock_timeout` is
  `KeyInUse` (409 `idempotency_key_in_use`);
- `settle` keeps 2xx answers and the business answers 402 and 409 (encrypted at rest, tagged
  with the customers they name, so erasing a customer can redact them) and deletes the record
  for any other answer, so the key can be used again once the request is fixed.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from django.db import OperationalError, connection
from django.http import HttpRequest, HttpResponse, HttpResponseBase

from billing_platform.core import crypto, errors
from billing_platform.core.db import (
    LOCK_NOT_AVAILABLE,
    qualified_cursor,
    quoted_schema,
    sqlstate,
)
from billing_platform.core.jsonbody import body_object
from billing_platform.core.problems import problem_response

STORED_STATUSES = frozenset({402, 409})
REPLAY_HEADER = "Idempotent-Replayed"
BODY_FIELD = "idempotency_key"

# Fields of the API's answers that name a customer (usage, hold, order, grant, identify, merge,
# referral): erasing that customer redacts the stored answer.
CUSTOMER_FIELDS = (
    "customer_id", "target_customer_id", "source_customer_id", "referrer_id", "referee_id",
)


# `{table}` is the schema-qualified record table (`_table`); every value is a bound parameter.
_CLAIM_SQL = (
    "INSERT INTO {table} (key, request_hash, content_type, created_at)"
    " VALUES (%s, %s, '', now()) ON CONFLICT (key) DO NOTHING RETURNING id"
)
_STORED_SQL = "SELECT request_hash, status_code, content_type, body FROM {table} WHERE key = %s"
_SETTLE_SQL = (
    "UPDATE {table} SET status_code = %s, content_type = %s, body = %s, customer_ids = %s"
    " WHERE key = %s"
)
_FORGET_SQL = "DELETE FROM {table} WHERE key = %s"


class KeyInUse(Exception):
    """Another request with this key is still running."""


def _valid_key(value: Any) -> str:
    if (
        not isinstance(value, str)
        or not 1 <= len(value) <= 255
        or not all(" " <= ch <= "~" for ch in value)
    ):
        raise errors.ValidationFailed(
            "An idempotency key is 1–255 printable ASCII characters.",
            errors=[{"loc": ["header", "Idempotency-Key"], "msg": "invalid idempotency key"}],
        )
    return value


def presented_key(request: HttpRequest, *, body_field: bool) -> str | None:
    """The `Idempotency-Key` header or, where allowed, the body's `idempotency_key` (header wins).

    Raises `ValidationFailed` for a key that is not 1–255 printable ASCII characters.
    """
    header = request.headers.get("Idempotency-Key")
    if header is not None:
        return _valid_key(header)
    if body_field:
        body = body_object(request)
        if body is not None and body.get(BODY_FIELD) is not None:
            return _valid_key(body[BODY_FIELD])
    return None


def request_hash(request: HttpRequest, *, body_field: bool, caller: str | None = None) -> str:
    """Method, path and the body as canonical JSON (without the body's key field).

    With `caller` (an API key's id) the hash is that key's alone: its answer replays to no other.
    """
    body = body_object(request)
    if body is None:
        canonical = request.body
    else:
        if body_field and BODY_FIELD in body:
            body = {name: value for name, value in body.items() if name != BODY_FIELD}
        canonical = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    digest = hashlib.sha256()
    digest.update(f"{request.method}\n{request.path}\n".encode())
    if caller is not None:
        digest.update(f"caller:{caller}\n".encode())
    digest.update(canonical)
    return digest.hexdigest()


def _table() -> str:
    """The record table of the tenant in use, schema-qualified: no `SET search_path` first."""
    return f"{quoted_schema(connection.schema_name)}.billable_idempotencyrecord"  # type: ignore[attr-defined]


def claim(key: str, hashed: str) -> HttpResponse | None:
    """Own the key (None), or the stored answer to replay, or a 422 for a reused key.

    Raises `KeyInUse` when the request holding the key outlasts the lock timeout.
    """
    table = _table()
    with qualified_cursor() as cursor:
        try:
            cursor.execute(
                _CLAIM_SQL.format(table=table),
                [key, hashed],
            )
        except OperationalError as exc:
            if sqlstate(exc) == LOCK_NOT_AVAILABLE:
                raise KeyInUse from exc
            raise
        if cursor.fetchone() is not None:
            return None
        cursor.execute(
            _STORED_SQL.format(table=table),
            [key],
        )
        row = cursor.fetchone()
    if row is None:  # removed meanwhile (its first request kept nothing): take it over
        return claim(key, hashed)
    stored_hash, status, content_type, body = row
    if stored_hash != hashed:
        return problem_response(
            errors.IdempotencyKeyReused("This key was first used for a different request.")
        )
    if status is None:
        raise KeyInUse
    response = HttpResponse(
        crypto.decrypt_bytes(bytes(body)), status=status, content_type=content_type
    )
    response[REPLAY_HEADER] = "true"
    return response


def customer_ids_of(content: bytes) -> list[str]:
    """The customer ids a JSON answer names at its top level."""
    try:
        data = json.loads(content)
    except (ValueError, UnicodeDecodeError):
        return []
    if not isinstance(data, dict):
        return []
    named = [str(data[name]) for name in CUSTOMER_FIELDS if isinstance(data.get(name), str)]
    # A customer itself (`POST /billing/customers/{id}/identities`) is named by its `id`.
    if isinstance(data.get("id"), str) and isinstance(data.get("identities"), list):
        named.append(data["id"])
    return named


def settle(key: str, response: HttpResponseBase) -> None:
    """Keep the answer with the record, or delete the record when the answer is not kept."""
    status = response.status_code
    table = _table()
    with qualified_cursor() as cursor:
        if 200 <= status < 300 or status in STORED_STATUSES:
            content = getattr(response, "content", b"")
            cursor.execute(
                _SETTLE_SQL.format(table=table),
                [status, response.get("Content-Type", ""), crypto.encrypt_bytes(content),
                 customer_ids_of(content), key],
            )
        else:
            cursor.execute(_FORGET_SQL.format(table=table), [key])
