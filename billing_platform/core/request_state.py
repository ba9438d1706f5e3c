"""What the layers of one request tell each other, in one typed object.

The request pipeline, the key auth, the rate limits and the exception handler each record their
part here instead of setting private attributes on the request.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.http import HttpRequest

from billing_platform.core.identity import KeyContext

_ATTR = "billable_state"


@dataclass
class RequestState:
    # The key the pipeline resolved before authentication ran, so the auth need not resolve it
    # again: (the presented key, its caller).
    resolved: tuple[str, KeyContext] | None = None
    # The auth check that accepted the request: (the auth object, the key, its caller). Ninja
    # runs an operation's auth again after the pipeline ran it; the second run reuses this.
    authenticated: tuple[object, str, KeyContext] | None = None
    # A retryable database error reached the exception handler: roll back and run again.
    retry: bool = False
    # The request was counted against its tenant's rate limit (once, whatever the retries).
    tenant_limit_counted: bool = False
    # The RateLimit-* headers of the last limit this request was counted against.
    ratelimit_headers: dict[str, str] = field(default_factory=dict)
    # The body as parsed JSON, read once for the idempotency layer and the parser:
    # (the raw body, its value, or the error reading it raised).
    body_json: tuple[bytes, Any, BaseException | None] | None = None


def request_state(request: HttpRequest) -> RequestState:
    state = getattr(request, _ATTR, None)
    if state is None:
        state = RequestState()
        setattr(request, _ATTR, state)
    return state
