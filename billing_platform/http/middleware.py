"""The middleware of every request: context and metrics, guards, tenant hygiene, problem fallbacks.

`RequestContextMiddleware` (first in MIDDLEWARE) takes the request id from a sane incoming
`X-Request-ID` or makes one, echoes it on the response, and after the response counts the request
and its latency (`billing_platform.http.metrics`) and writes the access log line.

Machine routes (`is_machine_route`: the API under `/api/`, the health checks, `/metrics`) are
called by programs that present a key or a token, never a browser session. Django's
authentication and message middleware serve the admin's browser sessions only: the versions here
(`BrowserOnly`) hand machine routes straight on to the next layer.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.contrib.auth.middleware import (
    AuthenticationMiddleware as DjangoAuthenticationMiddleware,
)
from django.contrib.messages.middleware import MessageMiddleware as DjangoMessageMiddleware
from django.http import HttpRequest, HttpResponse, HttpResponseBase
from django.utils.deprecation import MiddlewareMixin

from billing_platform.core import errors
from billing_platform.core.db import reset_to_public
from billing_platform.core.observability import (
    REQUEST_ID_HEADER,
    key_id_var,
    new_request_id,
    request_id_var,
    sane_request_id,
    tenant_var,
)
from billing_platform.core.problems import PROBLEM_CONTENT_TYPE, error_for_status, problem_response
from billing_platform.core.ratelimits import add_headers
from billing_platform.http import metrics

_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
_REQUEST_ID_META = "HTTP_" + REQUEST_ID_HEADER.upper().replace("-", "_")

# Paths programs call with a key or a token. The Swagger UI under the API is a page for people,
# served with the whole browser stack like the admin.
MACHINE_ROUTE_PREFIXES = ("/api/", "/healthz", "/readyz", "/metrics")
BROWSER_PAGES = ("/api/v1/docs",)
# Pages for people that render their own error pages (the tenant console's 403, 404 and 405).
OWN_ERROR_PAGES = ("/console/",)

access_logger = logging.getLogger("billable.access")

GetResponse = Callable[[HttpRequest], HttpResponseBase]


def is_machine_route(path: str) -> bool:
    """Whether a path is called by programs (key or token), never with a browser session."""
    return path.startswith(MACHINE_ROUTE_PREFIXES) and not path.startswith(BROWSER_PAGES)


class BrowserOnly(MiddlewareMixin):
    """Run the middleware it is mixed into on browser routes only; machine routes pass through.

    Mixed in before a Django middleware that has no `process_view`, `process_exception` or
    `process_template_response` hook: Django calls those for every request, whatever
    `__call__` does.
    """

    def __call__(self, request: HttpRequest) -> Any:
        if is_machine_route(request.path_info):
            return self.get_response(request)
        return super().__call__(request)


class AuthenticationMiddleware(BrowserOnly, DjangoAuthenticationMiddleware):
    """Django's `request.user` from the session, for the admin only (the API has its keys)."""


class MessageMiddleware(BrowserOnly, DjangoMessageMiddleware):
    """Django's one-time messages, for the admin only."""


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
            reset_to_public()


class ProblemFallbackMiddleware:
    """Turn the framework's bare 404/405 answers into problem documents (but on the pages that
    render their own, `OWN_ERROR_PAGES`)."""

    def __init__(self, get_response: GetResponse) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        response = self.get_response(request)
        if request.path_info.startswith(OWN_ERROR_PAGES):
            return response
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
        add_headers(request, response)
        return response


def _route(request: HttpRequest) -> str:
    match = getattr(request, "resolver_match", None)
    route = getattr(match, "route", None)
    # Unmatched paths share one label, so scanners cannot grow the metric without bound.
    return "<unmatched>" if route is None else "/" + route


class RequestContextMiddleware:
    """Request id in, request id out; one access log line and the request metrics per request."""

    def __init__(self, get_response: GetResponse) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        request_id = sane_request_id(request.META.get(_REQUEST_ID_META)) or new_request_id()
        tokens = (
            request_id_var.set(request_id),
            tenant_var.set(None),
            key_id_var.set(None),
        )
        started = time.perf_counter()
        try:
            response = self.get_response(request)
            response[REQUEST_ID_HEADER] = request_id
            elapsed = time.perf_counter() - started
            route = _route(request)
            metrics.observe_request(request, response, route=route, seconds=elapsed)
            # The line's fields are gathered only when someone will read them.
            if access_logger.isEnabledFor(logging.INFO):
                access_logger.info(
                    "%s %s %s",
                    request.method,
                    request.path,
                    response.status_code,
                    extra={
                        "method": request.method,
                        "path": request.path,
                        "route": route,
                        "status": response.status_code,
                        "duration_ms": round(elapsed * 1000, 2),
                    },
                )
            return response
        finally:
            request_id_var.reset(tokens[0])
            tenant_var.reset(tokens[1])
            key_id_var.reset(tokens[2])
