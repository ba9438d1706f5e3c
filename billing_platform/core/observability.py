"""Request context for logs: request id, tenant and API key of the current request.

`RequestContextMiddleware` (`billing_platform.http.middleware`) sets the request id; the API-key
auth fills in the tenant's slug and the key's id (`bind_caller`). `JsonFormatter` writes every log
record as one JSON object per line with whatever of that context is set; the key itself is never
part of it.
"""

from __future__ import annotations

import json
import logging
import re
import traceback
import uuid
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

request_id_var: ContextVar[str | None] = ContextVar("billable_request_id", default=None)
tenant_var: ContextVar[str | None] = ContextVar("billable_tenant", default=None)
key_id_var: ContextVar[str | None] = ContextVar("billable_key_id", default=None)

# Printable token characters only, bounded: anything else is replaced by an id of our own, so a
# client cannot inject text into log lines or headers.
_SANE_REQUEST_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@/+=-]{0,127}$")
REQUEST_ID_HEADER = "X-Request-ID"


def new_request_id() -> str:
    return uuid.uuid4().hex


def sane_request_id(value: str | None) -> str | None:
    if value and _SANE_REQUEST_ID.fullmatch(value):
        return value
    return None


def bind_caller(*, tenant_slug: str | None, key_id: str) -> None:
    """Record the authenticated caller of this request for its log lines."""
    tenant_var.set(tenant_slug)
    key_id_var.set(key_id)


# Attributes every LogRecord has; anything else was passed with `extra=` and is logged too.
_RECORD_FIELDS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {
    "message", "asctime", "taskName",
}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request context, extras."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, tz=UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        context = {
            "request_id": request_id_var.get(),
            "tenant": tenant_var.get(),
            "api_key_id": key_id_var.get(),
        }
        entry.update({name: value for name, value in context.items() if value is not None})
        for name, value in vars(record).items():
            if name not in _RECORD_FIELDS and not name.startswith("_"):
                entry[name] = value
        if record.exc_info:
            entry["exception"] = "".join(traceback.format_exception(*record.exc_info)).rstrip()
        elif record.exc_text:
            entry["exception"] = record.exc_text
        return json.dumps(entry, default=str, ensure_ascii=False)
