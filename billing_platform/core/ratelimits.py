"""Rate limits on Redis (django-ratelimit's counters), answered as 429 `rate_limited`.

- per tenant, shared by all its keys, at the tenant's `rate_limit` (`"0"` = unlimited);
- per client IP on the public endpoints (and tighter on signup);
- per client IP on failed authentication: past the limit, further unknown or wrong keys from that
  IP get 429 until the window ends; valid keys never pass through this counter;
- failed logins to the operators' admin (`LoginThrottle`), per account and per client IP, or per
  browser for a browser that signed in to the account before; `login_unlock` lifts them. The
  tenant console's login counts the same way in counters of its own (`group="consolelogin"`).

An IPv6 client is counted by its /64 network: one host usually holds the whole /64.

django-ratelimit's decorator drops the counts and raises PermissionDenied, so its core
`get_usage` is used directly: the counts feed `RateLimit-*` headers on every limited response.
Health checks and platform keys are never limited.
"""

from __future__ import annotations

import hashlib
import ipaddress
from typing import Any

from django.conf import settings
from django.core.cache import cache
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


def client_network(request: HttpRequest) -> str:
    """The client IP as counted by the per-IP limits: an IPv6 address stands for its /64."""
    return _network(client_ip(request))


def _network(ip: str) -> str:
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return ip
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((int(address), 64), strict=False))
    return str(address)


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
    _enforce(request, f"public:{group}", client_network(request), rate)


def auth_failure_limited(request: HttpRequest) -> errors.RateLimited | None:
    """Count a failed authentication; past the per-IP limit, the 429 to answer instead."""
    try:
        _enforce(request, "authfail", client_network(request), settings.AUTH_FAILURE_RATE_LIMIT)
    except errors.RateLimited as exc:
        return exc
    return None


def add_headers(request: HttpRequest, response: HttpResponseBase) -> None:
    headers = request_state(request).ratelimit_headers
    if headers and not response.has_header("RateLimit-Limit"):
        for name, value in headers.items():
            response[name] = value


# --- Failed logins to the operators' admin.


ADMIN_LOGIN = "adminlogin"
CONSOLE_LOGIN = "consolelogin"


def _login_generation_key(kind: str, value: str, group: str = ADMIN_LOGIN) -> str:
    digest = hashlib.sha256(value.encode()).hexdigest()
    return f"{group}:generation:{kind}:{digest}"


class LoginThrottle:
    """The failed-login counters one admin login attempt is judged by.

    An attempt counts against its account (the username, case-folded, whether or not it exists)
    and its client IP; from a browser that signed in to this account before (`device`, the id its
    signed cookie carries) it counts against that browser only, so failures an outsider makes on
    purpose never hold back the operator's own browser. A counter past its limit refuses every
    attempt, the right password included, until its window ends; refused attempts are not
    counted, so a lock never outlasts its window. `login_unlock` moves a counter's generation on,
    which starts it afresh.
    """

    def __init__(
        self,
        request: HttpRequest,
        username: str,
        *,
        device: str | None = None,
        group: str = ADMIN_LOGIN,
    ) -> None:
        self.request = request
        account, ip = username.strip().casefold(), client_network(request)
        account_key = _login_generation_key("account", account, group)
        ip_key = _login_generation_key("ip", ip, group)
        generations = cache.get_many([account_key, ip_key])
        account_value = f"{account}#{generations.get(account_key, 0)}"
        if group == CONSOLE_LOGIN:
            account_rate = settings.CONSOLE_LOGIN_ACCOUNT_FAILURE_LIMIT
            ip_rate = settings.CONSOLE_LOGIN_IP_FAILURE_LIMIT
        else:
            account_rate = settings.ADMIN_LOGIN_ACCOUNT_FAILURE_LIMIT
            ip_rate = settings.ADMIN_LOGIN_IP_FAILURE_LIMIT
        # (counter group, counted value, rate)
        self._counters: list[tuple[str, str, str]] = (
            [(f"{group}:device", f"{account_value}#{device}", account_rate)]
            if device
            else [
                (f"{group}:account", account_value, account_rate),
                (f"{group}:ip", f"{ip}#{generations.get(ip_key, 0)}", ip_rate),
            ]
        )

    def locked_for(self) -> int:
        """Seconds until a locked counter's window ends; 0 when the attempt may go ahead."""
        longest = 0
        for group, value, rate in self._counters:
            if not rate or rate == "0":
                continue
            usage = get_usage(
                self.request, group=group, key=lambda _g, _r, v=value: v, rate=rate,
                increment=False,
            )
            if usage is not None and usage["count"] >= usage["limit"]:
                longest = max(longest, int(usage["time_left"]), 1)
        return longest

    def failed(self) -> None:
        """Count a failed login against each counter of the attempt."""
        for group, value, rate in self._counters:
            if rate and rate != "0":
                _usage(self.request, group, value, rate)


def login_unlock(
    *, username: str | None = None, ip: str | None = None, group: str = ADMIN_LOGIN
) -> None:
    """Lift the failed-login locks of an account (its browsers' too) and/or of a client IP."""
    subjects = []
    if username is not None:
        subjects.append(_login_generation_key("account", username.strip().casefold(), group))
    if ip is not None:
        subjects.append(_login_generation_key("ip", _network(ip), group))
    for key in subjects:
        cache.add(key, 0, timeout=None)
        cache.incr(key)


# --- Password-reset requests of the console.

CONSOLE_RESET_REQUESTS = "consolereset"


def password_reset_limited(request: HttpRequest, email: str) -> int:
    """Count a console password-reset request against its email (case-folded, whether or not an
    account has it) and its client network; past either limit, the seconds until that window
    ends (the request is then refused), else 0."""
    longest = 0
    counters = (
        ("email", email.strip().casefold(), settings.CONSOLE_PASSWORD_RESET_EMAIL_LIMIT),
        ("ip", client_network(request), settings.CONSOLE_PASSWORD_RESET_IP_LIMIT),
    )
    for kind, value, rate in counters:
        if not rate or rate == "0":
            continue
        usage = _usage(request, f"{CONSOLE_RESET_REQUESTS}:{kind}", value, rate)
        if usage is not None and usage["should_limit"]:
            longest = max(longest, int(usage["time_left"]), 1)
    return longest

