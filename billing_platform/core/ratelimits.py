"""Rate limits on Redis (django-ratelimit's counters), answered as 429 `rate_limited`.

- per tenant, shared by all its keys, at the tenant's `rate_limit` (`"0"` = unlimited);
- per client IP on the public endpoints (and tighter on signup);
- per client IP on failed authentication: past the limit, further unknown or wrong keys from that
  IP get 429 until the window ends; valid keys never pass through this counter.

django-ratelimit's decorator drops the counts and raises PermissionDenied, so its core
`get_usage` is used directly: the counts feed `RateLimit-*` headers on every limited response.
Health checks and platform keys are never limited.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponseBase
from django_ratelimit.core import get_usage

from billing_platform.core import errors
from billing_platform.core.request_state import request_state


def client_ip(request: HttpRequest) -> str:
    """REMOTE_ADDR, or the address TRUSTED_PROXY_HOPS proxies in front of us recorded."""
    hops = settings.TRUSTED_PROXY_HOPS
    remote = str(request.META.get("REMOTE_ADDR", ""))
    if hops <= 0:
        return remote
    forwarded = [p.strip() for p in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")]
    forwarded = [p for p in forwarded if p]
    # Each trusted proxy appended the address it saw; the client is `hops` entries from the end.
    if len(forwarded) >= hops:
        return forwarded[-hops]
    return remote



def _usage(request: HttpRequest, group: str, value: str, rate: str) -> dict[str, Any] | None:
    return get_usage(
        request, group=group, key=lambda _group, _request: value, rate=rate, increment=True
    )


def _headers(usage: dict[str, Any]) -> dict[str, str]:
    return {
        "RateLimit-Limit": str(usage["limit"]),
        "RateLimit-Remaining": str(max(0, usage["limit"] - usage["count"])),
        "RateLimit-Reset": str(max(1, int(usage["time_left"]))),
    }


def _enforce(request: HttpRequest, group: str, value: str, rate: str) -> None:
    if not rate or rate == "0":
        return
    usage = _usage(request, group, value, rate)
    if usage is None:
        return
    headers = _headers(usage)
    if usage["should_limit"]:
        error = errors.RateLimited(
            f"The limit of {rate} was reached; retry in {headers['RateLimit-Reset']} s."
        )
        error.headers.update(headers)
        error.headers["Retry-After"] = headers["RateLimit-Reset"]
        raise error
    request_state(request).ratelimit_headers = headers


def limit_tenant(request: HttpRequest, tenant_id: int, rate: str) -> None:
    """Count a request against its tenant's limit (shared by all the tenant's keys).

    Once per request: a request the transaction layer runs again after a lock timeout has
    already been counted and let through.
    """
    state = request_state(request)
    if state.tenant_limit_counted:
        return
    _enforce(request, "tenant", str(tenant_id), rate)
    state.tenant_limit_counted = True


def limit_public(request: HttpRequest, group: str, rate: str) -> None:
    _enforce(request, f"public:{group}", client_ip(request), rate)


def auth_failure_limited(request: HttpRequest) -> errors.RateLimited | None:
    """Count a failed authentication; past the per-IP limit, the 429 to answer instead."""
    try:
        _enforce(request, "authfail", client_ip(request), settings.AUTH_FAILURE_RATE_LIMIT)
    except errors.RateLimited as exc:
        return exc
    return None


def add_headers(request: HttpRequest, response: HttpResponseBase) -> None:
    headers = request_state(request).ratelimit_headers
    if headers and not response.has_header("RateLimit-Limit"):
        for name, value in headers.items():
            response[name] = value
