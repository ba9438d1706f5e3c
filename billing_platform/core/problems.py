"""Render every error as RFC 9457 `application/problem+json`.

One renderer (`problem_response`) serves the exception handlers of the API
(`billing_platform.http.handlers`), Django's 400/403/404/500 handlers and the middleware that
catches what neither sees (405, oversized bodies). The OpenAPI schema declares the same shape for
every error response (`error_responses`).
"""

from __future__ import annotations

import json
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder
from django.http import HttpResponse
from pydantic import ConfigDict

from billing_platform.core import errors
from billing_platform.core.schema_types import Schema

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
    """A 422: validation errors list the offending fields; business 422s carry no list.

    `metadata_too_large` also tells the `size` of the refused metadata and the `limit` (bytes of
    JSON)."""

    errors: list[ValidationErrorItem] | None = None
    size: int | None = None
    limit: int | None = None


class QuotaProblem(Problem):
    """A 402 (`quota_exhausted`, `insufficient_quota`): what is left of the feature.

    `remaining` is the units left (0 when nothing usable covers it); `remaining_credits` the
    credits left in the products that price the feature in credits, when there are such."""

    remaining: int
    remaining_credits: int | None = None


class ForbiddenProblem(Problem):
    """A 403; `insufficient_scope` names the `required_scope` (and, for a key that would hand
    out scopes it lacks, `missing_scopes`)."""

    required_scope: str | None = None
    missing_scopes: list[str] | None = None


def problem_body(error: errors.BillingError) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": PROBLEM_TYPE_BASE + error.code,
        "title": error.title,
        "status": error.status,
        "detail": error.detail,
        "code": error.code,
    }
    body.update(error.extra)
    if isinstance(error, errors.ValidationFailed) and error.fields:
        # A service names the body field it refuses; the location is the renderer's to write.
        body["errors"] = [{"loc": ["body", *path], "msg": msg} for path, msg in error.fields]
    return body


class ProblemResponse(HttpResponse):
    """A problem document; `problem_code` is its `code`, read by the request metrics."""

    def __init__(self, error: errors.BillingError) -> None:
        super().__init__(
            json.dumps(problem_body(error), cls=DjangoJSONEncoder),
            status=error.status,
            content_type=PROBLEM_CONTENT_TYPE,
        )
        self.problem_code = error.code
        for name, value in error.headers.items():
            self[name] = value


def problem_response(error: errors.BillingError) -> ProblemResponse:
    """Render one error; headers it carries (Retry-After, WWW-Authenticate, ...) go along."""
    return ProblemResponse(error)


def error_for_status(status: int, detail: str | None = None) -> errors.BillingError:
    cls = _STATUS_ERRORS.get(status)
    if cls is None:
        cls = errors.BadRequest if status < 500 else errors.ServiceUnavailable
    return cls(detail)


def internal_error_response() -> HttpResponse:
    body = {
        "type": PROBLEM_TYPE_BASE + "internal_error",
        "title": "Internal server error",
        "status": 500,
        "detail": "The server failed to handle this request; it has been logged.",
        "code": "internal_error",
    }
    return HttpResponse(json.dumps(body), status=500, content_type=PROBLEM_CONTENT_TYPE)


# --- OpenAPI: declare the problem responses.

_COMMON_TENANT_ERRORS = (400, 401, 403, 413, 415, 422, 429, 503)
# What a keyless public endpoint can answer besides its own errors.
PUBLIC_ERRORS = (400, 413, 415, 422, 429, 503)


def error_responses(*statuses: int, common: tuple[int, ...] = _COMMON_TENANT_ERRORS) -> dict:
    """Response declarations for errors: `{404: Problem, 422: ValidationProblem, ...}`."""
    declared: dict[int, type[Schema]] = {}
    for status in (*common, *statuses):
        declared[status] = _STATUS_PROBLEMS.get(status, Problem)
    return declared


_STATUS_PROBLEMS: dict[int, type[Problem]] = {
    402: QuotaProblem,
    403: ForbiddenProblem,
    422: ValidationProblem,
}


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
