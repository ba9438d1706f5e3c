"""The one error hierarchy of the platform.

Every error a client can see is a `BillingError` subclass with a stable snake_case `code` (never
renamed) and an HTTP `status`; the renderer in `billing_platform.core.problems` turns it into
RFC 9457 `application/problem+json`.

    BillingError
    ├── BadRequest (400): MalformedJson
    ├── NotAuthenticated (401): ApiKeyRevoked, ApiKeyExpired
    ├── PaymentRequired (402)
    ├── Forbidden (403): TenantSuspended, InsufficientScope, WrongKeyType
    ├── NotFound (404): TenantNotFound, ApiKeyNotFound
    ├── MethodNotAllowed (405)
    ├── Conflict (409): SlugTaken, TenantDeleting, IdempotencyKeyInUse, TooManyKeys
    ├── PayloadTooLarge (413)
    ├── UnsupportedMediaType (415)
    ├── Unprocessable (422): ValidationFailed, InvalidSlug, ConfirmationRequired,
    │                        IdempotencyKeyReused
    ├── RateLimited (429)
    └── ServiceUnavailable (503): DatabaseBusy, TenantUnavailable

Billing-engine errors (`billable/errors.py`) extend the same classes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar


class BillingError(Exception):
    """A failure the client is told about, with a stable machine `code`."""

    status: ClassVar[int] = 400
    code: ClassVar[str] = "bad_request"
    title: ClassVar[str] = "Bad request"

    def __init__(self, detail: str | None = None, **extra: Any) -> None:
        self.detail = detail or self.title
        self.extra = extra
        self.headers: dict[str, str] = {}
        super().__init__(self.detail)


class BadRequest(BillingError):
    status = 400
    code = "bad_request"
    title = "Bad request"


class MalformedJson(BadRequest):
    code = "malformed_json"
    title = "The request body is not valid JSON"


class NotAuthenticated(BillingError):
    status = 401
    code = "not_authenticated"
    title = "A valid API key is required"

    def __init__(self, detail: str | None = None, **extra: Any) -> None:
        super().__init__(detail, **extra)
        self.headers["WWW-Authenticate"] = 'Bearer realm="billable"'


class ApiKeyRevoked(NotAuthenticated):
    code = "api_key_revoked"
    title = "This API key has been revoked"


class ApiKeyExpired(NotAuthenticated):
    code = "api_key_expired"
    title = "This API key has expired"


class PaymentRequired(BillingError):
    status = 402
    code = "payment_required"
    title = "Not enough quota"


class Forbidden(BillingError):
    status = 403
    code = "forbidden"
    title = "Forbidden"


class TenantSuspended(Forbidden):
    code = "tenant_suspended"
    title = "This tenant is suspended"


class InsufficientScope(Forbidden):
    code = "insufficient_scope"
    title = "The API key lacks the scope this operation needs"


class WrongKeyType(Forbidden):
    code = "wrong_key_type"
    title = "This kind of key cannot be used on this route"


class NotFound(BillingError):
    status = 404
    code = "not_found"
    title = "Not found"


class TenantNotFound(NotFound):
    code = "tenant_not_found"
    title = "No such tenant"


class ApiKeyNotFound(NotFound):
    code = "api_key_not_found"
    title = "No such API key"


class MethodNotAllowed(BillingError):
    status = 405
    code = "method_not_allowed"
    title = "Method not allowed"


class Conflict(BillingError):
    status = 409
    code = "conflict"
    title = "Conflict"


class SlugTaken(Conflict):
    code = "slug_taken"
    title = "A tenant with this slug already exists"


class TenantDeleting(Conflict):
    code = "tenant_deleting"
    title = "This tenant is being deleted"


class IdempotencyKeyInUse(Conflict):
    code = "idempotency_key_in_use"
    title = "A request with this Idempotency-Key is still running"


class TooManyKeys(Conflict):
    code = "too_many_keys"
    title = "This tenant already has the maximum number of API keys"


class PayloadTooLarge(BillingError):
    status = 413
    code = "payload_too_large"
    title = "The request body is larger than 1 MiB"

    def __init__(self, detail: str | None = None, **extra: Any) -> None:
        super().__init__(detail, **extra)
        self.headers["Connection"] = "close"


class UnsupportedMediaType(BillingError):
    status = 415
    code = "unsupported_media_type"
    title = "Request bodies must be JSON (Content-Type: application/json)"


class Unprocessable(BillingError):
    status = 422
    code = "unprocessable"
    title = "Unprocessable request"


class ValidationFailed(Unprocessable):
    """422 `validation_error`, listing the offending fields.

    Services name the body field they refuse (`field="amount"`, or a path such as
    `field=("metadata", "features")`) and the renderer writes its `loc`; the framework's own
    validation passes complete `errors` items (query, header or body locations).
    """

    code = "validation_error"
    title = "The request is not valid"

    def __init__(
        self,
        detail: str | None = None,
        *,
        field: str | Sequence[str | int] | None = None,
        msg: str = "invalid",
        **extra: Any,
    ) -> None:
        super().__init__(detail, **extra)
        self.fields: list[tuple[tuple[str | int, ...], str]] = []
        if field is not None:
            path = (field,) if isinstance(field, str) else tuple(field)
            self.fields.append((path, msg))


class InvalidSlug(Unprocessable):
    code = "invalid_slug"
    title = "The slug is not valid"


class ConfirmationRequired(Unprocessable):
    code = "confirmation_required"
    title = "Repeat the tenant's slug in ?confirm= to delete it"


class IdempotencyKeyReused(Unprocessable):
    code = "idempotency_key_reused"
    title = "This Idempotency-Key was used for a different request"


class RateLimited(BillingError):
    status = 429
    code = "rate_limited"
    title = "Too many requests"


class ServiceUnavailable(BillingError):
    status = 503
    code = "service_unavailable"
    title = "Service unavailable"


class DatabaseBusy(ServiceUnavailable):
    code = "database_busy"
    title = "The database is busy; retry shortly"

    def __init__(self, detail: str | None = None, retry_after: int = 1, **extra: Any) -> None:
        super().__init__(detail, **extra)
        self.headers["Retry-After"] = str(retry_after)


class TenantUnavailable(ServiceUnavailable):
    """The tenant's schema cannot be used (missing, or a name that cannot be selected)."""

    code = "tenant_unavailable"
    title = "This tenant's data cannot be reached; the platform's operators must repair it"
