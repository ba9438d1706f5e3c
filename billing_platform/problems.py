"""Render every error as RFC 9457 `application/problem+json`.

One renderer (`problem_response`) serves the Ninja exception handlers, Django's 400/403/404/500
handlers and the middleware that catches what neither sees (405, oversized bodies). The OpenAPI
schema declares the same shape for every error response (`error_responses`).
"""

from __future__ import annotations

import json
import logging
from typing import Any

from django.core.exceptions import PermissionDenied, RequestDataTooBig
from django.core.serializers.json import DjangoJSONEncoder
from django.db import DataError, OperationalError
from django.http import Http404, HttpRequest, HttpResponse
from ninja import NinjaAPI, Schema
from ninja.errors import AuthenticationError, AuthorizationError, HttpError, Throttled
from ninja.errors import ValidationError as NinjaValidationError
from ninja.parser import Parser
from pydantic import ConfigDict

from billing_platform import errors

logger = logging.getLogger("billable.errors")

PROBLEM_CONTENT_TYPE = "application/problem+json"
PROBLEM_TYPE_BASE = "https://billable.dev/problems/"

_STATUS_ERRORS: dict[int, type[errors.BillingError]] = {
    400: errors.BadRequest,
    401: errors.NotAuthenticated,
    403: errors.Forbidden,
    404: errors.NotFound,
    405: errors.MethodNotAllowed,
    409: errors.Conflict,
    413: errors.PayloadTooLarge,
    415: errors.UnsupportedMediaType,
    422: errors.Unprocessable,
    429: errors.RateLimited,
    503: errors.ServiceUnavailable,
}


class Problem(Schema):
    """An RFC 9457 problem document; `code` is stable and machine-readable."""

    model_config = ConfigDict(extra="allow")

    type: str
    title: str
    status: int
    detail: str
    code: str


class ValidationErrorItem(Schema):
    loc: list[str | int]
    msg: str


class ValidationProblem(Problem):
    """A 422: validation errors list the offending fields; business 422s carry no list."""

    errors: list[ValidationErrorItem] | None = None


def problem_body(error: errors.BillingError) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": PROBLEM_TYPE_BASE + error.code,
        "title": error.title,
        "status": error.status,
        "detail": error.detail,
        "code": error.code,
    }
    body.update(error.extra)
    return body


def problem_response(error: errors.BillingError) -> HttpResponse:
    """Render one error; headers it carries (Retry-After, WWW-Authenticate, ...) go along."""
    response = HttpResponse(
        json.dumps(problem_body(error), cls=DjangoJSONEncoder),
        status=error.status,
        content_type=PROBLEM_CONTENT_TYPE,
    )
    for name, value in error.headers.items():
        response[name] = value
    # Read by the request metrics (consume outcomes by problem code).
    response.problem_code = error.code  # type: ignore[attr-defined]
    return response


def error_for_status(status: int, detail: str | None = None) -> errors.BillingError:
    cls = _STATUS_ERRORS.get(status)
    if cls is None:
        cls = errors.BadRequest if status < 500 else errors.ServiceUnavailable
    return cls(detail)


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
            errors=[{"loc": ["body"], "msg": "value out of range"}],
        )
    if isinstance(exc, OperationalError):
        logger.warning("database unavailable or busy: %s", exc)
        return errors.DatabaseBusy()
    return None


def handle_exception(request: HttpRequest, exc: Exception) -> HttpResponse:
    from billing_platform.transactions import is_retryable, mark_retry

    if is_retryable(exc):
        mark_retry(request)
    error = to_billing_error(exc)
    if error is None:
        logger.exception("unhandled error on %s %s", request.method, request.path, exc_info=exc)
        return internal_error_response()
    if isinstance(error, errors.NotAuthenticated):
        from billing_platform.ratelimits import auth_failure_limited

        error = auth_failure_limited(request) or error
    return problem_response(error)


def internal_error_response() -> HttpResponse:
    body = {
        "type": PROBLEM_TYPE_BASE + "internal_error",
        "title": "Internal server error",
        "status": 500,
        "detail": "The server failed to handle this request; it has been logged.",
        "code": "internal_error",
    }
    return HttpResponse(json.dumps(body), status=500, content_type=PROBLEM_CONTENT_TYPE)


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


class JsonParser(Parser):
    """Parse JSON bodies strictly; anything else is 415, bad JSON is 400 `malformed_json`.

    Duplicate keys and NaN/Infinity are refused; unknown fields are ignored by the schemas.
    """

    def parse_body(self, request: HttpRequest) -> dict[str, Any]:
        content_type = (request.content_type or "").lower()
        if content_type and content_type != "application/json" and not content_type.endswith(
            "+json"
        ):
            raise errors.UnsupportedMediaType()
        try:
            data: dict[str, Any] = json.loads(
                request.body, object_pairs_hook=_no_duplicates, parse_constant=_no_constants
            )
        except (ValueError, UnicodeDecodeError) as exc:
            raise errors.MalformedJson(f"The body is not valid JSON: {exc}") from exc
        _check_strings(data, ["body"])
        return data


def _bad_string(text: str) -> bool:
    if "\x00" in text:
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # an unpaired surrogate escape
        return True
    return False


def _check_strings(value: Any, loc: list[Any]) -> None:
    """Refuse strings a database cannot store: NUL characters and unpaired surrogates."""
    if isinstance(value, str):
        if _bad_string(value):
            raise errors.ValidationFailed(
                "Strings may not contain NUL characters or unpaired surrogates.",
                errors=[{"loc": loc, "msg": "unsupported character"}],
            )
    elif isinstance(value, dict):
        for key, item in value.items():
            if _bad_string(key):
                raise errors.ValidationFailed(
                    "Keys may not contain NUL characters or unpaired surrogates.",
                    errors=[{"loc": [*loc, "<key>"], "msg": "unsupported character"}],
                )
            _check_strings(item, [*loc, key])
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _check_strings(item, [*loc, index])


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"duplicate key {key!r}")
        result[key] = value
    return result


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


# --- OpenAPI: declare the problem responses.

_COMMON_TENANT_ERRORS = (400, 401, 403, 413, 415, 422, 429, 503)


def error_responses(*statuses: int, common: tuple[int, ...] = _COMMON_TENANT_ERRORS) -> dict:
    """Response declarations for errors: `{404: Problem, 422: ValidationProblem, ...}`."""
    declared: dict[int, type[Schema]] = {}
    for status in (*common, *statuses):
        declared[status] = ValidationProblem if status == 422 else Problem
    return declared


def rewrite_error_content_types(schema: dict[str, Any]) -> dict[str, Any]:
    """Error responses are `application/problem+json`, not `application/json`."""
    for path_item in schema.get("paths", {}).values():
        for operation in path_item.values():
            if not isinstance(operation, dict):
                continue
            for status, response in operation.get("responses", {}).items():
                if str(status).isdigit() and int(status) >= 400:
                    content = response.get("content", {})
                    if "application/json" in content:
                        content[PROBLEM_CONTENT_TYPE] = content.pop("application/json")
    return schema
