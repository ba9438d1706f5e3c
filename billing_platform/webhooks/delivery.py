"""Posting one delivery: URL safety (SSRF), Standard Webhooks signing, the HTTP request.

The host is resolved at registration and again at every delivery, and the request goes to the
address that was checked (the original host travels in `Host` and TLS SNI), so DNS rebinding
cannot point a delivery at an internal address. No redirects are followed; responses are read up
to 64 KiB.
"""

from __future__ import annotations

import ipaddress
import json
import math
import socket
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from standardwebhooks.webhooks import Webhook

from billing_platform.errors import Unprocessable

USER_AGENT = "Billable-Webhooks/1.0"
MAX_READ = 64 * 1024
LOG_BYTES = 4 * 1024
MAX_RETRY_AFTER = 3600


class InvalidWebhookUrl(Unprocessable):
    code = "invalid_webhook_url"
    title = "The webhook URL is not allowed"


def _forbidden(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return bool(
        address.is_loopback
        or address.is_private
        or address.is_link_local
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
        or not address.is_global
    )


def resolve_checked(url: str) -> tuple[str, int, list[str]]:
    """Check a URL and resolve its host; returns (host, port, allowed addresses).

    Raises InvalidWebhookUrl for other schemes, no host, credentials, unresolvable hosts and (unless
    WEBHOOKS_ALLOW_PRIVATE_NETWORKS) any loopback, private, link-local, multicast or reserved
    address.
    """
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise InvalidWebhookUrl("The URL cannot be parsed.") from exc
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidWebhookUrl("Only http:// and https:// URLs with a host are allowed.")
    if parts.username or parts.password:
        raise InvalidWebhookUrl("URLs with credentials are not allowed; use custom headers.")
    host = parts.hostname
    port = port or (443 if parts.scheme == "https" else 80)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise InvalidWebhookUrl(f"The host {host!r} does not resolve.") from exc
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    if not settings.WEBHOOKS_ALLOW_PRIVATE_NETWORKS:
        for address in addresses:
            if _forbidden(ipaddress.ip_address(address.split("%")[0])):
                raise InvalidWebhookUrl(
                    f"{host!r} resolves to {address}, which is not a public address."
                )
    if not addresses:
        raise InvalidWebhookUrl(f"The host {host!r} does not resolve.")
    return host, port, addresses


def format_time(value: datetime) -> str:
    """A time as the API renders it (ISO 8601, milliseconds, `Z`), so bodies match the API."""
    return str(DjangoJSONEncoder().default(value))


def event_object(event: Any, tenant_slug: str) -> dict[str, Any]:
    """The event as the events API shows it and every delivery posts it."""
    return {
        "id": event.pk,
        "type": event.type,
        "created_at": format_time(event.created_at),
        "tenant": tenant_slug,
        "data": event.data,
    }


def event_body(event: Any, tenant_slug: str) -> str:
    """The delivered body: compact JSON of the event object, non-ASCII kept as is."""
    return json.dumps(event_object(event, tenant_slug), separators=(",", ":"), ensure_ascii=False)


def signature_headers(event_id: str, body: str, secrets_: list[str]) -> dict[str, str]:
    now = datetime.now(UTC)
    return {
        "webhook-id": event_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": " ".join(Webhook(s).sign(event_id, now, body) for s in secrets_),
    }


@dataclass
class Outcome:
    status_code: int | None
    body: str
    error: str
    duration_ms: int
    retry_after: int | None

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def _retry_after(value: str | None) -> int | None:
    """Seconds to wait from a `Retry-After` header (seconds or an HTTP date), capped at 1 h."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return min(MAX_RETRY_AFTER, int(value))
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    seconds = (when - datetime.now(UTC)).total_seconds()
    return max(0, min(MAX_RETRY_AFTER, math.ceil(seconds)))


def post(client: httpx.Client, url: str, body: str, headers: dict[str, str]) -> Outcome:
    started = time.monotonic()
    try:
        host, _port, addresses = resolve_checked(url)
    except InvalidWebhookUrl as exc:
        return Outcome(None, "", f"refused: {exc.detail}", 0, None)
    parts = urlsplit(url)
    address = addresses[0]
    netloc_ip = f"[{address}]" if ":" in address else address
    if parts.port:
        netloc_ip += f":{parts.port}"
    target = urlunsplit(parts._replace(netloc=netloc_ip))
    request_headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "Host": parts.netloc.rsplit("@", 1)[-1],
        **headers,
    }
    extensions = {"sni_hostname": host} if parts.scheme == "https" else {}
    try:
        with client.stream(
            "POST",
            target,
            content=body.encode(),
            headers=request_headers,
            extensions=extensions,
        ) as response:
            received = b""
            for chunk in response.iter_bytes():
                received += chunk
                if len(received) >= MAX_READ:
                    break
            duration = int((time.monotonic() - started) * 1000)
            return Outcome(
                response.status_code,
                # PostgreSQL text cannot hold NUL.
                received[:LOG_BYTES].decode("utf-8", "replace").replace("\x00", "\ufffd"),
                "",
                duration,
                _retry_after(response.headers.get("Retry-After")),
            )
    except httpx.HTTPError as exc:
        duration = int((time.monotonic() - started) * 1000)
        return Outcome(None, "", f"{exc.__class__.__name__}: {exc}"[:1000], duration, None)


def new_client() -> httpx.Client:
    timeout = settings.WEBHOOK_TIMEOUT_SECONDS
    return httpx.Client(
        timeout=httpx.Timeout(timeout, connect=timeout), follow_redirects=False, trust_env=False
    )
