"""Request guards and tenant hygiene that must hold for every request."""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.db import connection
from django.http import HttpRequest, HttpResponse, HttpResponseBase

from billing_platform import errors
from billing_platform.problems import PROBLEM_CONTENT_TYPE, error_for_status, problem_response

_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})

GetResponse = Callable[[HttpRequest], HttpResponseBase]


def _empty_or_json(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media in ("", "application/json") or media.endswith("+json")


class RequestGuardMiddleware:
    """Refuse bodies over the limit from `Content-Length`, before anything reads them."""

    def __init__(self, get_response: GetResponse) -> None:
        self.get_response = get_response
        self.limit: int = settings.MAX_REQUEST_BODY_BYTES

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        raw_length = request.META.get("CONTENT_LENGTH") or "0"
        try:
            length = int(raw_length)
        except ValueError:
            return problem_response(errors.BadRequest("Content-Length is not a number."))
        if "\x00" in request.path or "%00" in request.META.get("QUERY_STRING", ""):
            return problem_response(errors.BadRequest("NUL characters are not allowed."))
        if length > self.limit:
            return problem_response(
                errors.PayloadTooLarge(f"The body has {length} bytes; the limit is {self.limit}.")
            )
        if (
            length == 0
            and request.method in _BODY_METHODS
            and _empty_or_json(request.META.get("CONTENT_TYPE", ""))
            and request.path.startswith("/api/")
            and "HTTP_TRANSFER_ENCODING" not in request.META
        ):
            # A POST with no body means `{}` (n8n and curl -X POST send such requests).
            request._body = b"{}"
        return self.get_response(request)


class TenantResetMiddleware:
    """Return the connection to the public schema after every request, whatever happened.

    The API-key auth selects the tenant's schema for the request; nothing after the response may
    run in it. With TENANT_LIMIT_SET_CALLS the reset is lazy: the next cursor sets the path.
    """

    def __init__(self, get_response: GetResponse) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        try:
            return self.get_response(request)
        finally:
            if connection.schema_name != "public":  # type: ignore[attr-defined]
                connection.set_schema_to_public()  # type: ignore[attr-defined]


class ProblemFallbackMiddleware:
    """Turn the framework's bare 404/405 answers into problem documents."""

    def __init__(self, get_response: GetResponse) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        response = self.get_response(request)
        if response.status_code in (404, 405) and not response.get(
            "Content-Type", ""
        ).startswith(PROBLEM_CONTENT_TYPE):
            replacement: HttpResponse = problem_response(error_for_status(response.status_code))
            if response.status_code == 405 and response.has_header("Allow"):
                replacement["Allow"] = response["Allow"]
            return replacement
        return response


class RateLimitHeadersMiddleware:
    """Put the RateLimit-* counts of a limited request on its response."""

    def __init__(self, get_response: GetResponse) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        response = self.get_response(request)
        from billing_platform.ratelimits import add_headers

        add_headers(request, response)
        return response
