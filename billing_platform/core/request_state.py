"""What the layers of one request tell each other, in one typed object.

The request pipeline, the key auth, the rate limits and the exception handler each record their
part here instead of setting private attributes on the request.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from django.http import HttpRequest

from billing_platform.core.identity import KeyContext

_ATTR = "billable_state"


@dataclass
class RequestState:
    # The key the pipeline resolved before authentication ran, so the auth need not resolve it
    # again: (the presented key, its caller).
    resolved: tuple[str, KeyContext] | None = None
    # A retryable database error reached the exception handler: roll back and run again.
    retry: bool = False
    # The request was counted against its tenant's rate limit (once, whatever the retries).
    tenant_limit_counted: bool = False
    # The RateLimit-* headers of the last limit this request was counted against.
    ratelimit_headers: dict[str, str] = field(default_factory=dict)


def request_state(request: HttpRequest) -> RequestState:
    state = getattr(request, _ATTR, None)
    if state is None:
        state = RequestState()
        setattr(request, _ATTR, state)
    return state
