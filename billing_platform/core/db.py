"""Database helpers every layer shares: schema switching, service transactions, SQLSTATEs.

- `activate_tenant` / `reset_to_public`: the one way to point the connection at a tenant's schema
  for the rest of a request and back (django-tenants' `search_path`), each a no-op when already
  there. Code that visits schemas one after another (the sweep, verify, export, onboarding's demo
  catalog) uses django-tenants' `schema_context(name)`, which restores the previous schema;
- `request_transaction` / `service_atomic`: a request's outermost transaction, which the
  top-level services join instead of opening savepoints;
- `sqlstate` / `is_retryable`: which database errors are worth running a request again for;
- `qualified_cursor`: a cursor for statements that name their schema themselves, which costs no
  `SET search_path` round trip (the hot paths call their tenant's functions schema-qualified).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, Self, TypeVar

import psycopg
from django.db import OperationalError, ProgrammingError, connection, transaction
from django_tenants.postgresql_backend.base import is_valid_schema_name
from psycopg.abc import Params

from billing_platform.core import errors

# Serialization failure, deadlock, lock not available (lock_timeout), statement cancelled
# (statement_timeout): the whole request can run again.
RETRYABLE_SQLSTATES = frozenset({"40001", "40P01", "55P03", "57014"})
LOCK_NOT_AVAILABLE = "55P03"
# Undefined table, invalid schema name: what a query meets in a tenant schema that is not there.
SCHEMA_GONE_SQLSTATES = frozenset({"42P01", "3F000"})
PUBLIC_SCHEMA = "public"

logger = logging.getLogger("billable.tenants")


def activate_tenant(tenant: Any) -> None:
    """Select a tenant's schema (a `Tenant` row or the auth's `TenantRef`) for what follows.

    Raises TenantUnavailable (503) for a schema name django-tenants refuses to select (a slug
    once accepted with a trailing newline), which would otherwise fail the first query with a 500.
    """
    if connection.schema_name != tenant.schema_name:  # type: ignore[attr-defined]
        if not is_valid_schema_name(tenant.schema_name):
            logger.error("tenant %r: unusable schema name %r", tenant.slug, tenant.schema_name)
            raise errors.TenantUnavailable(
                f"The schema of tenant {tenant.slug!r} cannot be selected."
            )
        connection.set_tenant(tenant)  # type: ignore[attr-defined]


def reset_to_public() -> None:
    """Return the connection to the public schema (lazily: the next cursor sets the path)."""
    if connection.schema_name != PUBLIC_SCHEMA:  # type: ignore[attr-defined]
        connection.set_schema_to_public()  # type: ignore[attr-defined]


# Django turns psycopg's automatic preparation off (`prepare_threshold` None), which also refuses
# explicit requests. A threshold no statement reaches keeps it off for every other cursor, while
# `_PreparingCursor` prepares on request.
_PREPARE_ONLY_ON_REQUEST = 2**31


class _PreparingCursor(psycopg.Cursor[Any]):
    """Server-side binding; every statement is prepared on first use, then only bound and run."""

    def execute(
        self,
        query: Any,
        params: Params | None = None,
        *,
        prepare: bool | None = None,
        binary: bool | None = None,
    ) -> Self:
        return super().execute(query, params, prepare=True, binary=binary)


@contextmanager
def qualified_cursor(*, prepared: bool = False) -> Iterator[Any]:
    """A cursor of the default connection that does not set the search_path first.

    django-tenants issues `SET search_path` on the first cursor after a schema switch; a
    statement that names its schema (`"t_acme".billable_consume(...)`) needs none. With
    `prepared`, its statements are prepared on the connection the first time they run there
    (one per tenant schema; psycopg keeps the last 100), so later runs skip parsing and
    planning. The cursor is Django's own wrapper, so query capture, error translation and the
    connection's health handling work as for any other.
    """
    connection.close_if_health_check_failed()
    connection.ensure_connection()
    with connection.wrap_database_errors:
        if prepared:
            raw = connection.connection
            if raw.prepare_threshold is None:
                raw.prepare_threshold = _PREPARE_ONLY_ON_REQUEST
            created = _PreparingCursor(raw)
        else:
            created = connection.create_cursor()
        cursor = connection._prepare_cursor(created)  # type: ignore[attr-defined]
    with cursor:
        yield cursor


def quoted_schema(schema_name: str) -> str:
    """A schema name as an identifier in SQL text (`activate_tenant` has vetted it)."""
    if not is_valid_schema_name(schema_name):
        raise errors.TenantUnavailable(f"The schema {schema_name!r} cannot be selected.")
    return connection.ops.quote_name(schema_name)


def sqlstate(exc: BaseException) -> str | None:
    cause = exc.__cause__ or exc
    return getattr(cause, "sqlstate", None) or getattr(cause, "pgcode", None)


def is_retryable(exc: BaseException) -> bool:
    return isinstance(exc, OperationalError) and sqlstate(exc) in RETRYABLE_SQLSTATES


def is_tenant_schema_gone(exc: BaseException) -> bool:
    """Whether a database error says the selected tenant schema, or its tables, are missing."""
    return (
        isinstance(exc, ProgrammingError)
        and sqlstate(exc) in SCHEMA_GONE_SQLSTATES
        and connection.schema_name != PUBLIC_SCHEMA  # type: ignore[attr-defined]
    )


_in_request_transaction: ContextVar[bool] = ContextVar("in_request_transaction", default=False)


@contextmanager
def request_transaction() -> Iterator[None]:
    """The outermost transaction of a request; the caller rolls it back on an error answer."""
    with transaction.atomic():
        token = _in_request_transaction.set(True)
        try:
            yield
        finally:
            _in_request_transaction.reset(token)


@contextmanager
def services_join() -> Iterator[None]:
    """Inside a transaction the caller owns, top-level services join it (no savepoints)."""
    token = _in_request_transaction.set(True)
    try:
        yield
    finally:
        _in_request_transaction.reset(token)


OWN_TRANSACTION = "billable_own_transaction"

View = TypeVar("View", bound=Callable[..., Any])


def own_transaction(view: View) -> View:
    """Mark a POST view whose work is atomic by itself (one statement, or its service's own
    transaction): without an idempotency key, the request path opens no transaction around it,
    so a one-statement service runs in autocommit. Its error answers must leave nothing
    written, as a rolled-back request transaction would."""
    setattr(view, OWN_TRANSACTION, True)
    return view


def service_atomic() -> transaction.Atomic:
    """The transaction of a top-level service.

    Inside a request transaction that rolls back on every error answer, a savepoint would only
    cost two round trips: the service joins the request's transaction instead. Elsewhere (and
    under an idempotency record, which must commit with a 402 or 409) it is a normal atomic block.
    """
    if _in_request_transaction.get() and connection.in_atomic_block:
        return transaction.atomic(savepoint=False)
    return transaction.atomic()
