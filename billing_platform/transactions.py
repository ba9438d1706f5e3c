"""The outermost transaction of every tenant POST: idempotency keys and retries.

Wraps a Ninja operation's whole run (auth, validation, service, rendering). The tenant's schema
is selected before any transaction opens. When a POST carries an `Idempotency-Key` (header, or on
/billing the body field `idempotency_key`; the header wins) the layer opens the request's
outermost transaction and first claims the key in the tenant's `IdempotencyRecord` table; the
record commits with the effect, behind a unique constraint. Without a key the layer still opens
the outermost transaction, rolled back on any error answer, so a failed write leaves nothing
behind (not even the customer its reference would have created); top-level services then join
it instead of opening savepoints (`service_atomic`).

- a second request with the same key waits for the first (PostgreSQL blocks its INSERT on the
  unique index until the first commits, bounded by `lock_timeout`) and then replays its answer,
  byte for byte, with `Idempotent-Replayed: true`; if the first is still running after the
  lock timeout, 409 `idempotency_key_in_use`;
- the same key with a different method, path or body is 422 `idempotency_key_reused`;
- only 2xx answers and the business answers 402 and 409 are kept; others remove the record.
  Kept answers are encrypted at rest (a `POST /keys` answer holds the new key) and tagged with
  the customers they name, so erasing a customer can redact them.

Lock and statement timeouts, deadlocks and serialization failures roll the whole request back
and run it again (a few times, with jitter); if they persist the answer is 503 `database_busy`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import time
from collections.abc import Callable
from functools import wraps
from typing import Any

from django.db import OperationalError, connection, transaction
from django.http import HttpRequest, HttpResponse, HttpResponseBase
from ninja import Router
from ninja.decorators import decorate_view

from billing_platform import errors
from billing_platform.problems import problem_response
from billing_platform.webhooks import crypto

logger = logging.getLogger("billable.transactions")

RETRYABLE_SQLSTATES = frozenset({"40001", "40P01", "55P03", "57014"})
LOCK_NOT_AVAILABLE = "55P03"
ATTEMPTS = 4
STORED_STATUSES = frozenset({402, 409})
REPLAY_HEADER = "Idempotent-Replayed"

Run = Callable[..., HttpResponseBase]


class _Retry(Exception):
    """Roll the request back and run it again."""


class _KeyInUse(Exception):
    """Another request with this key is still running."""


def sqlstate(exc: BaseException) -> str | None:
    cause = exc.__cause__ or exc
    return getattr(cause, "sqlstate", None) or getattr(cause, "pgcode", None)


def is_retryable(exc: BaseException) -> bool:
    return isinstance(exc, OperationalError) and sqlstate(exc) in RETRYABLE_SQLSTATES


def mark_retry(request: HttpRequest) -> None:
    """Called by the error renderer when a retryable database error reached it."""
    request._billable_retry = True  # type: ignore[attr-defined]


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


def _body_object(request: HttpRequest) -> dict[str, Any] | None:
    try:
        data = json.loads(request.body or b"{}")
    except (ValueError, UnicodeDecodeError):
        return None
    return data if isinstance(data, dict) else None


def _extract_key(request: HttpRequest, body_field: bool) -> str | None:
    header = request.headers.get("Idempotency-Key")
    if header is not None:
        return _valid_key(header)
    if body_field:
        body = _body_object(request)
        if body is not None and body.get("idempotency_key") is not None:
            return _valid_key(body["idempotency_key"])
    return None


def _request_hash(request: HttpRequest, body_field: bool) -> str:
    body = _body_object(request)
    if body is None:
        canonical = request.body
    else:
        if body_field:
            body.pop("idempotency_key", None)
        canonical = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    digest = hashlib.sha256()
    digest.update(f"{request.method}\n{request.path}\n".encode())
    digest.update(canonical)
    return digest.hexdigest()


def _tenant_context(request: HttpRequest) -> Any:
    """The caller's tenant if the key is a valid tenant key; None otherwise (auth decides)."""
    from tenants.auth import presented_key, resolve

    raw = presented_key(request)
    if not raw:
        return None
    try:
        context = resolve(raw)
    except errors.BillingError:
        return None
    if context.tenant is None:
        return None
    request._billable_key_context = (raw, context)  # type: ignore[attr-defined]
    return context


def _select_schema(tenant: Any) -> None:
    if connection.schema_name != tenant.schema_name:  # type: ignore[attr-defined]
        connection.set_tenant(tenant)  # type: ignore[attr-defined]


def _claim(key: str, request_hash: str) -> HttpResponse | None:
    """Own the key (None), or the stored answer to replay, or a 422 for a reused key."""
    with connection.cursor() as cursor:
        try:
            cursor.execute(
                "INSERT INTO billable_idempotencyrecord"
                " (key, request_hash, content_type, created_at)"
                " VALUES (%s, %s, '', now()) ON CONFLICT (key) DO NOTHING RETURNING id",
                [key, request_hash],
            )
        except OperationalError as exc:
            if sqlstate(exc) == LOCK_NOT_AVAILABLE:
                raise _KeyInUse from exc
            raise
        if cursor.fetchone() is not None:
            return None
        cursor.execute(
            "SELECT request_hash, status_code, content_type, body "
            "FROM billable_idempotencyrecord WHERE key = %s",
            [key],
        )
        row = cursor.fetchone()
    if row is None:  # removed meanwhile (its first request kept nothing): take it over
        return _claim(key, request_hash)
    stored_hash, status, content_type, body = row
    if stored_hash != request_hash:
        return problem_response(
            errors_for_reuse()("This key was first used for a different request.")
        )
    if status is None:
        raise _KeyInUse
    response = HttpResponse(
        crypto.decrypt_bytes(bytes(body)), status=status, content_type=content_type
    )
    response[REPLAY_HEADER] = "true"
    return response


def errors_for_reuse() -> type[errors.BillingError]:
    from billable.errors import IdempotencyKeyReused

    return IdempotencyKeyReused


# Fields of the API's answers that name a customer (usage, hold, order, grant, identify, merge,
# referral): erasing that customer redacts the stored answer.
CUSTOMER_FIELDS = (
    "customer_id", "target_customer_id", "source_customer_id", "referrer_id", "referee_id",
)


def customer_ids_of(content: bytes) -> list[str]:
    """The customer ids a JSON answer names at its top level."""
    try:
        data = json.loads(content)
    except (ValueError, UnicodeDecodeError):
        return []
    if not isinstance(data, dict):
        return []
    return [str(data[name]) for name in CUSTOMER_FIELDS if isinstance(data.get(name), str)]


def _settle(key: str, response: HttpResponseBase) -> None:
    status = response.status_code
    with connection.cursor() as cursor:
        if 200 <= status < 300 or status in STORED_STATUSES:
            content = getattr(response, "content", b"")
            cursor.execute(
                "UPDATE billable_idempotencyrecord SET status_code = %s, content_type = %s, "
                "body = %s, customer_ids = %s WHERE key = %s",
                [status, response.get("Content-Type", ""), crypto.encrypt_bytes(content),
                 customer_ids_of(content), key],
            )
        else:
            cursor.execute("DELETE FROM billable_idempotencyrecord WHERE key = %s", [key])


REQUEST_TRANSACTION_ATTR = "_billable_request_transaction"


def service_atomic() -> transaction.Atomic:
    """The transaction of a top-level service.

    Inside a request transaction that rolls back on every error answer, a savepoint would only
    cost two round trips: the service joins the request's transaction instead. Elsewhere (and
    under an idempotency record, which must commit with a 402 or 409) it is a normal atomic block.
    """
    if getattr(connection, REQUEST_TRANSACTION_ATTR, False) and connection.in_atomic_block:
        return transaction.atomic(savepoint=False)
    return transaction.atomic()


def _run_in_request_transaction(
    run: Run, request: HttpRequest, *args: Any, **kwargs: Any
) -> HttpResponseBase:
    """One transaction for the whole request, rolled back on any error answer."""
    with transaction.atomic():
        setattr(connection, REQUEST_TRANSACTION_ATTR, True)
        try:
            response = run(request, *args, **kwargs)
        finally:
            setattr(connection, REQUEST_TRANSACTION_ATTR, False)
        if getattr(request, "_billable_retry", False):
            raise _Retry
        if response.status_code >= 400:
            transaction.set_rollback(True)
        return response


def _authenticate(run: Run, request: HttpRequest) -> HttpResponseBase | None:
    """Run the operation's own authentication now; its error answer, or None to go on.

    `run` is the operation's bound `run`; the operation runs the same checks again inside it,
    at no cost (the key was resolved once per request, the rate limit counts once).
    """
    operation = getattr(run, "__self__", None)
    if operation is None or not getattr(operation, "auth_callbacks", None):
        return None
    denied: HttpResponseBase | None = operation._run_authentication(request)
    return denied


def transactional(*, body_field: bool) -> Callable[[Run], Run]:
    """Decorate an operation's run: schema first, idempotency key, retries."""

    def decorator(run: Run) -> Run:
        @wraps(run)
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
            if request.method != "POST":
                return run(request, *args, **kwargs)
            context = _tenant_context(request)
            # Authenticate fully (key kind, scope, the tenant's rate limit) before anything
            # else: a stored answer is replayed only to a caller allowed to make the request.
            denied = _authenticate(run, request)
            if denied is not None:
                return denied
            try:
                key = _extract_key(request, body_field)
            except errors.BillingError as exc:
                return problem_response(exc)
            if context is None:
                key = None
            else:
                # Select the schema before the transaction opens: one `SET search_path`.
                _select_schema(context.tenant)
            request_hash = _request_hash(request, body_field) if key else ""
            for attempt in range(ATTEMPTS):
                request._billable_retry = False  # type: ignore[attr-defined]
                try:
                    if not key:
                        return _run_in_request_transaction(run, request, *args, **kwargs)
                    with transaction.atomic():
                        replay = _claim(key, request_hash)
                        if replay is not None:
                            return replay
                        effect = transaction.savepoint()
                        response = run(request, *args, **kwargs)
                        if getattr(request, "_billable_retry", False):
                            raise _Retry
                        if response.status_code >= 400:
                            # The answer is kept (402, 409) or not, but the effect never is.
                            transaction.savepoint_rollback(effect)
                        else:
                            transaction.savepoint_commit(effect)
                        _settle(key, response)
                        return response
                except _KeyInUse:
                    from billable.errors import IdempotencyKeyInUse

                    return problem_response(IdempotencyKeyInUse())
                except (_Retry, OperationalError) as exc:
                    if isinstance(exc, OperationalError) and not is_retryable(exc):
                        raise
                    logger.info(
                        "retrying %s %s (attempt %d)", request.method, request.path, attempt + 1
                    )
                    time.sleep(random.uniform(0.005, 0.03) * (2**attempt))
            return problem_response(errors.DatabaseBusy(retry_after=1))

        return wrapper

    return decorator


def transactional_posts(router: Router, *, body_field: bool) -> Router:
    """Apply `transactional` to every POST operation of a router (before it is mounted)."""
    for path_view in router.path_operations.values():
        for operation in path_view.operations:
            if "POST" in operation.methods:
                decorate_view(transactional(body_field=body_field))(operation.view_func)
    return router
