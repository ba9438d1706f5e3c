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
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from standardwebhooks.webhooks import Webhook

from billing_platform.core.errors import Unprocessable

USER_AGENT = "Billable-Webhooks/1.0"
MAX_READ = 64 * 1024
LOG_BYTES = 4 * 1024
MAX_RETRY_AFTER = 3600


class InvalidWebhookUrl(Unprocessable):
    code = "invalid_webhook_url"
    title = "The webhook URL is not allowed"


SITE_LOCAL = ipaddress.ip_network("fec0::/10")


def _forbidden(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address):
        # Forms that carry an IPv4 address inside are judged by that address.
        embedded = address.ipv4_mapped or address.sixtofour
        if address.teredo is not None:
            embedded = address.teredo[1]
        if address in SITE_LOCAL:
            return True
        if embedded is not None:
            return _forbidden(embedded)
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


def post(clients: Clients, url: str, body: str, headers: dict[str, str]) -> Outcome:
    """Post a body to the checked address of `url`; every failure is an Outcome, never raised.

    The whole exchange, the answer's body included, must end within WEBHOOK_TIMEOUT_SECONDS of
    the first byte read: a receiver that trickles its answer is cut off and counted as failed.
    """
    started = time.monotonic()
    timeout = float(settings.WEBHOOK_TIMEOUT_SECONDS)

    def failed(error: str) -> Outcome:
        return Outcome(None, "", error[:1000], int((time.monotonic() - started) * 1000), None)

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
        # Read as sent: a compressed answer would be expanded past the read cap.
        "Accept-Encoding": "identity",
        "Host": _ascii_host(parts),
        **headers,
    }
    extensions = {"sni_hostname": _ascii_hostname(host)} if parts.scheme == "https" else {}
    try:
        with clients.for_host(host).stream(
            "POST",
            target,
            content=body.encode(),
            headers=request_headers,
            extensions=extensions,
        ) as response:
            received = b""
            for chunk in response.iter_raw():
                received += chunk
                if len(received) >= MAX_READ:
                    break
                if time.monotonic() - started > timeout:
                    return failed(f"timeout: no complete answer within {timeout:g} s")
            duration = int((time.monotonic() - started) * 1000)
            return Outcome(
                response.status_code,
                # PostgreSQL text cannot hold NUL.
                received[:LOG_BYTES].decode("utf-8", "replace").replace("\x00", "\ufffd"),
                "",
                duration,
                _retry_after(response.headers.get("Retry-After")),
            )
    except Exception as exc:  # any failure to post is a failed attempt, logged and retried
        return failed(f"{exc.__class__.__name__}: {exc}")


def _ascii_hostname(host: str) -> str:
    """The host as it goes on the wire (IDNA for international names)."""
    try:
        return host.encode("idna").decode("ascii")
    except UnicodeError:
        return host


def _ascii_host(parts: Any) -> str:
    host = _ascii_hostname(parts.hostname or "")
    if ":" in host:
        host = f"[{host}]"
    return f"{host}:{parts.port}" if parts.port else host


class Clients:
    """One pooled HTTP client per receiving host name.

    Requests go to a checked IP address with the name in `Host` and TLS SNI, so a pool keyed by
    address would reuse a TLS connection verified for one name to post to another name that
    shares the address; a client per name never does. Least recently used clients are closed
    past `max_hosts`.
    """

    def __init__(self, max_hosts: int = 256) -> None:
        self.max_hosts = max_hosts
        self._clients: OrderedDict[str, httpx.Client] = OrderedDict()
        self._lock = threading.Lock()

    def for_host(self, host: str) -> httpx.Client:
        with self._lock:
            client = self._clients.get(host)
            if client is not None:
                self._clients.move_to_end(host)
                return client
            client = _client()
            self._clients[host] = client
            while len(self._clients) > self.max_hosts:
                _name, evicted = self._clients.popitem(last=False)
                evicted.close()  # a post in flight on it fails and is retried
            return client

    def close(self) -> None:
        with self._lock:
            for client in self._clients.values():
                client.close()
            self._clients.clear()

    def __enter__(self) -> Clients:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _client() -> httpx.Client:
    timeout = settings.WEBHOOK_TIMEOUT_SECONDS
    return httpx.Client(
        timeout=httpx.Timeout(timeout, connect=timeout), follow_redirects=False, trust_env=False
    )


def new_client() -> Clients:
    return Clients()
