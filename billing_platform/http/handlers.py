"""Map every exception to the platform's errors, rendered as problem documents.

Ninja's exception handlers all go through `handle_exception`; a retryable database error also
marks the request for the request pipeline to run again (`RequestState.retry`). Django's own
400/403/404/500 handlers (`urls.py`) answer with the same renderer.
"""

from __future__ import annotations

import logging
from typing import Any

from django.core.exceptions import PermissionDenied, RequestDataTooBig
from django.db import DataError, OperationalError
from django.http import Http404, HttpRequest, HttpResponse
from ninja import NinjaAPI
from ninja.errors import AuthenticationError, AuthorizationError, HttpError, Throttled
from ninja.errors import ValidationError as NinjaValidationError

from billing_platform.core import errors
from billing_platform.core.db import is_retryable, is_tenant_schema_gone
from billing_platform.core.problems import (
    error_for_status,
    internal_error_response,
    problem_response,
)
from billing_platform.core.ratelimits import auth_failure_limited
from billing_platform.core.request_state import request_state

logger = logging.getLogger("billable.errors")


def _validation_items(raw: list[dict[str, Any]]) -> list[dict[str, Any]]:
    items = []
    for item in raw:
        loc = [part if isinstance(part, int) else str(part) for part in item.get("loc", [])]
        items.append({"loc": loc, "msg": str(item.get("msg", "invalid"))})
    return items


def to_billing_error(exc: Exception) -> errors.BillingError | None:
    """Map a framework exception to the platform's error, or None if it is a bug (500)."""
    if isinstance(exc, errors.BillingError):
        return exc
    cause = exc.__cause__
    if isinstance(exc, HttpError) and isinstance(cause, errors.BillingError):
        # Ninja wraps parser errors (malformed JSON, media type) in HttpError(400).
        return cause
    if isinstance(exc, NinjaValidationError):
        items = _validation_items(exc.errors)
        detail = "; ".join(f"{'.'.join(map(str, i['loc']))}: {i['msg']}" for i in items)
        return errors.ValidationFailed(detail or None, errors=items)
    if isinstance(exc, AuthenticationError):
        return errors.NotAuthenticated()
    if isinstance(exc, AuthorizationError):
        return errors.Forbidden()
    if isinstance(exc, Throttled):
        return errors.RateLimited()
    if isinstance(exc, HttpError):
        return error_for_status(exc.status_code, str(exc))
    if isinstance(exc, Http404):
        return errors.NotFound()
    if isinstance(exc, RequestDataTooBig):
        return errors.PayloadTooLarge()
    if isinstance(exc, PermissionDenied):
        return errors.Forbidden()
    if isinstance(exc, DataError):
        # Input the database cannot store (out-of-range values): the client's to correct.
        logger.info("database refused a value: %s", exc)
        return errors.ValidationFailed(
            "A value is out of the range the database can store.",
            field=(),
            msg="value out of range",
        )
    if isinstance(exc, OperationalError):
        logger.warning("database unavailable or busy: %s", exc)
        return errors.DatabaseBusy()
    if is_tenant_schema_gone(exc):
        # One broken tenant (its schema dropped): its callers get a 503, the operators a trace.
        logger.error("the tenant's schema or its tables are missing", exc_info=exc)
        return errors.TenantUnavailable()
    return None


def handle_exception(request: HttpRequest, exc: Exception) -> HttpResponse:
    if is_retryable(exc):
        request_state(request).retry = True
    error = to_billing_error(exc)
    if error is None:
        logger.exception("unhandled error on %s %s", request.method, request.path, exc_info=exc)
        return internal_error_response()
    if isinstance(error, errors.NotAuthenticated):
        error = auth_failure_limited(request) or error
    return problem_response(error)


def install_handlers(api: NinjaAPI) -> None:
    """Route every exception Ninja sees through the one renderer.

    Ninja picks the most specific registered class, so each of its own defaults is replaced.
    """
    for exc_class in (
        Exception,
        Http404,
        HttpError,
        AuthenticationError,
        AuthorizationError,
        Throttled,
        NinjaValidationError,
        errors.BillingError,
    ):
        api.add_exception_handler(exc_class, handle_exception)  # type: ignore[arg-type]


# --- Django's error handlers (handler400/403/404/500 in urls.py).


def bad_request(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return problem_response(errors.BadRequest())


def permission_denied(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return problem_response(errors.Forbidden())


def not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return problem_response(errors.NotFound(f"No route for {request.path}."))


def server_error(request: HttpRequest) -> HttpResponse:
    return internal_error_response()
