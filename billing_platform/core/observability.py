"""Request context for logs: request id, tenant and API key of the current request.

`RequestContextMiddleware` (`billing_platform.http.middleware`) sets the request id; the API-key
auth fills in the tenant's slug and the key's id (`bind_caller`). `JsonFormatter` writes every log
record as one JSON object per line with whatever of that context is set; the key itself is never
part of it.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
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


# --- Lines for people (LOG_FORMAT=plain; `make run` on a terminal)

_RESET = "\033[0m"
_DIM = "\033[2m"
_LEVEL_COLORS = {"DEBUG": "\033[2m", "WARNING": "\033[33m", "ERROR": "\033[31m",
                 "CRITICAL": "\033[1;31m"}
_STATUS_COLORS = {2: "\033[32m", 3: "\033[36m", 4: "\033[33m", 5: "\033[31m"}


def use_color(stream: Any) -> bool:
    """ANSI colours only on a terminal, and never when NO_COLOR is set (no-color.org)."""
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty()) and not os.environ.get("NO_COLOR")


class HumanFormatter(logging.Formatter):
    """One short line per record, for reading on a terminal.

    An access line reads `12:04:05  POST /api/v1/billing/quota/consume  402  3.1 ms  demo`; any
    other record `12:04:05  WARNING  logger: message`. Colours (status class, level) only when
    stderr, where the console handler writes, is a terminal.
    """

    def __init__(self, *args: Any, color: bool | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.color = use_color(sys.stderr) if color is None else color

    def _paint(self, code: str | None, text: str) -> str:
        return f"{code}{text}{_RESET}" if self.color and code else text

    def format(self, record: logging.LogRecord) -> str:
        clock = self._paint(
            _DIM, datetime.fromtimestamp(record.created, tz=UTC).strftime("%H:%M:%S")
        )
        status = getattr(record, "status", None)
        if record.name == "billable.access" and isinstance(status, int):
            line = (
                f"{clock}  {getattr(record, 'method', '')} {getattr(record, 'path', '')}  "
                f"{self._paint(_STATUS_COLORS.get(status // 100), str(status))}  "
                f"{getattr(record, 'duration_ms', 0):.1f} ms"
            )
            tenant = tenant_var.get()
            if tenant:
                line += f"  {tenant}"
        else:
            level = self._paint(_LEVEL_COLORS.get(record.levelname), record.levelname)
            line = f"{clock}  {level}  {record.name}: {record.getMessage()}"
        if record.exc_info:
            line += "\n" + "".join(traceback.format_exception(*record.exc_info)).rstrip()
        elif record.exc_text:
            line += "\n" + record.exc_text
        return line
