"""The path of every tenant POST, top to bottom: auth, tenant, idempotency, service, answer.

`transactional_posts(router, body_field=...)` wraps each POST operation of a router. For one
request the wrapper:

1. **auth**: resolves the presented key once (`RequestState.resolved`, reused by the auth
   classes) and runs the operation's own authentication in full (key kind, scope, the tenant's
   rate limit), so a stored answer is replayed only to a caller allowed to make the request;
2. **idempotency key**: the `Idempotency-Key` header or, on `/billing`, the body field
   `idempotency_key` (422 for a malformed one; ignored without a tenant). With `per_caller`
   (`/keys`, whose answers hold a new key's secret) the calling key is part of the request's
   hash, so another key, perhaps a weaker one, gets 422 instead of the stored answer;
3. **tenant**: selects the tenant's schema before any transaction opens (one `SET search_path`);
4. **service**: runs the operation (validation, service, rendering) in the request's outermost
   transaction. Without a key that is `request_transaction`, which the top-level services join
   instead of opening savepoints, rolled back on any error answer. With a key it first claims
   the key (`billing_platform.http.idempotency`), runs the operation in a savepoint rolled back
   on an error answer, and settles the record in the same transaction, so the record commits
   with the effect or not at all. A view marked `own_transaction` (its work is atomic by
   itself) runs without the request transaction when there is no key, and without the
   savepoint under one;
5. **answer**: a lock or statement timeout, deadlock or serialization failure rolls the attempt
   back and runs it again (4 attempts, 5–30 ms × 2ⁿ of jitter); when attempts run out, 503
   `database_busy` with `Retry-After: 1`.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from functools import wraps
from typing import Any

from django.db import OperationalError, ProgrammingError, connection, transaction
from django.http import HttpRequest, HttpResponseBase
from ninja import Router
from ninja.decorators import decorate_view
from ninja.errors import AuthenticationError
from ninja.operation import Operation

from billing_platform.core import errors
from billing_platform.core.db import (
    OWN_TRANSACTION,
    activate_tenant,
    is_retryable,
    is_tenant_schema_gone,
    request_transaction,
    services_join,
)
from billing_platform.core.identity import TenantRef
from billing_platform.core.problems import problem_response
from billing_platform.core.request_state import request_state
from billing_platform.http import idempotency
from billing_platform.http.handlers import handle_exception
from tenants.auth import presented_key
from tenants.resolution import resolve

logger = logging.getLogger("billable.transactions")

ATTEMPTS = 4

Run = Callable[..., HttpResponseBase]


class _Retry(Exception):
    """Roll the request back and run it again."""


def _caller_tenant(request: HttpRequest) -> TenantRef | None:
    """The caller's tenant if the key is a valid tenant key; None otherwise (auth decides)."""
    raw = presented_key(request)
    if not raw:
        return None
    try:
        context = resolve(raw)
    except errors.BillingError:
        return None
    if context.tenant is None:
        return None
    request_state(request).resolved = (raw, context)
    return context.tenant


def _authenticate(operation: Operation | None, request: HttpRequest) -> HttpResponseBase | None:
    """Run the operation's auth callbacks now; the error answer, or None to go on.

    The operation runs the same callbacks again inside `run`, at no cost: the key was resolved
    once for the request and the rate limit counts once.
    """
    if operation is None or not operation.auth_callbacks:
        return None
    for callback in operation.auth_callbacks:
        try:
            result = callback(request)
        except Exception as exc:
            return operation.api.on_exception(request, exc)
        if result:
            request.auth = result  # type: ignore[attr-defined]
            return None
    return operation.api.on_exception(request, AuthenticationError())


def _owns_transaction(run: Run) -> bool:
    operation = getattr(run, "__self__", None)
    return bool(getattr(getattr(operation, "view_func", None), OWN_TRANSACTION, False))


def _run_once(
    run: Run, request: HttpRequest, key: str | None, hashed: str, /, *args: Any, **kwargs: Any
) -> HttpResponseBase:
    """One attempt in the request's transaction; raises `_Retry` to run it again.

    Its own parameters are positional-only: the view's path parameters arrive in `kwargs`
    under their own names (a route's `{key}` is not the idempotency key).
    """
    if not key and _owns_transaction(run):
        response = run(request, *args, **kwargs)
        if request_state(request).retry:
            raise _Retry
        return response
    if not key:
        with request_transaction():
            response = run(request, *args, **kwargs)
            if request_state(request).retry:
                raise _Retry
            if response.status_code >= 400:
                transaction.set_rollback(True)
            return response
    # Under a key the services keep their savepoints: the record must still be written after
    # a 402 or 409 rolled their effect back.
    with transaction.atomic():
        replay = idempotency.claim(key, hashed)
        if replay is not None:
            return replay
        if _owns_transaction(run):
            # Its error answers leave nothing written: no savepoint is needed around it.
            with services_join():
                response = run(request, *args, **kwargs)
            if request_state(request).retry:
                raise _Retry
            if connection.needs_rollback:  # a failed statement: keep nothing, not even the key
                return response
            idempotency.settle(key, response)
            return response
        effect = transaction.savepoint()
        response = run(request, *args, **kwargs)
        if request_state(request).retry:
            raise _Retry
        # The answer is kept (402, 409) or not, but a failed effect never is.
        if response.status_code >= 400:
            transaction.savepoint_rollback(effect)
        else:
            transaction.savepoint_commit(effect)
        idempotency.settle(key, response)
        return response


def transactional(*, body_field: bool, per_caller: bool = False) -> Callable[[Run], Run]:
    """Decorate a POST operation's run with the request path described above."""

    def decorator(run: Run) -> Run:
        @wraps(run)
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
            if request.method != "POST":
                return run(request, *args, **kwargs)
            try:
                return post(request, *args, **kwargs)
            except Exception as exc:
                # What escapes the path (a database that stops answering while the key is
                # resolved, a Citus worker that is down) gets the answer it would get inside
                # an operation (503 database_busy, …), never Django's own 500 page.
                return handle_exception(request, exc)

        def post(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
            # 1. auth
            tenant = _caller_tenant(request)
            denied = _authenticate(getattr(run, "__self__", None), request)
            if denied is not None:
                return denied
            # 2. idempotency key
            try:
                key = idempotency.presented_key(request, body_field=body_field)
            except errors.BillingError as exc:
                return problem_response(exc)
            # 3. tenant
            if tenant is None:
                key = None
            else:
                activate_tenant(tenant)
            state = request_state(request)
            caller = state.resolved[1].key_id if per_caller and state.resolved else None
            hashed = (
                idempotency.request_hash(request, body_field=body_field, caller=caller)
                if key
                else ""
            )
            # 4. service, 5. answer
            for attempt in range(ATTEMPTS):
                state.retry = False
                try:
                    return _run_once(run, request, key, hashed, *args, **kwargs)
                except idempotency.KeyInUse:
                    return problem_response(errors.IdempotencyKeyInUse())
                except ProgrammingError as exc:
                    # The idempotency record's table is the first a dropped schema lacks.
                    if not is_tenant_schema_gone(exc):
                        raise
                    logger.error("the tenant's schema or its tables are missing", exc_info=exc)
                    return problem_response(errors.TenantUnavailable())
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


def transactional_posts(router: Router, *, body_field: bool, per_caller: bool = False) -> Router:
    """Apply `transactional` to every POST operation of a router (before it is mounted)."""
    wrap = transactional(body_field=body_field, per_caller=per_caller)
    for path_view in router.path_operations.values():
        for operation in path_view.operations:
            if "POST" in operation.methods:
                decorate_view(wrap)(operation.view_func)
    return router
