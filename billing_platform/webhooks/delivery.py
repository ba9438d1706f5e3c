"""Posting one delivery: URL safety (SSRF), Standard Webhooks signing, the HTTP request.

The host is resolved at registration and again at every delivery, and the request goes to the
address that was checked (the original host travels in `Host` and TLS SNI), so DNS rebinding
cannot point a delivery at an internal address. No redirects are followed; responses are read up
to 64 KiB. Connections are kept alive per receiving host name (`Clients`, `HostConnections`).
"""

from __future__ import annotations

import http.client
import ipaddress
import json
import math
import select
import socket
import ssl
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from functools import lru_cache
from typing import Any
from urllib.parse import quote, urlsplit

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


@lru_cache(maxsize=1024)
def _signer(secret: str) -> Webhook:
    """A Standard Webhooks signer per secret: its key is decoded once, not per delivery."""
    return Webhook(secret)


def signature_headers(event_id: str, body: str, secrets_: list[str]) -> dict[str, str]:
    """The Standard Webhooks headers: one `v1,` signature per secret, space-separated."""
    now = datetime.now(UTC)
    return {
        "webhook-id": event_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": " ".join(_signer(s).sign(event_id, now, body) for s in secrets_),
    }


# At most this many of an answer's headers are logged, each value cut to HEADER_BYTES.
MAX_LOGGED_HEADERS = 100
HEADER_BYTES = 1000


@dataclass
class Outcome:
    status_code: int | None
    body: str
    error: str
    duration_ms: int
    retry_after: int | None
    # The answer's headers as [name, value] pairs, and the request's headers as they were sent
    # (empty when nothing was sent).
    headers: list[tuple[str, str]] = field(default_factory=list)
    sent_headers: dict[str, str] = field(default_factory=dict)

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


class _Deadline(Exception):
    """The receiver did not answer completely within the delivery's time."""


@dataclass(frozen=True)
class _Target:
    """What every post to one URL shares; the address is resolved and checked per delivery."""

    scheme: str
    path: str  # the request target: path and query, percent-encoded
    host_header: str
    server_name: str  # TLS SNI and the name the certificate must carry


# Characters a request target keeps as they are (existing escapes included); the others
# (spaces, controls, non-ASCII) are percent-encoded as UTF-8.
_URL_SAFE = "!$%&'()*+,/:;=?@[]~"


@lru_cache(maxsize=4096)
def _target(url: str) -> _Target:
    parts = urlsplit(url)
    path = quote(parts.path or "/", safe=_URL_SAFE)
    if parts.query:
        path += "?" + quote(parts.query, safe=_URL_SAFE)
    return _Target(parts.scheme, path, _ascii_host(parts), _ascii_hostname(parts.hostname or ""))


def post(clients: Clients, url: str, body: str, headers: dict[str, str]) -> Outcome:
    """Post a body to the checked address of `url`; every failure is an Outcome, never raised.

    The whole exchange, the answer's body included, must end within WEBHOOK_TIMEOUT_SECONDS:
    a receiver that trickles its answer is cut off and counted as failed.
    """
    started = time.monotonic()
    timeout = float(settings.WEBHOOK_TIMEOUT_SECONDS)

    def failed(error: str) -> Outcome:
        return Outcome(
            None, "", error[:1000], int((time.monotonic() - started) * 1000), None,
            sent_headers=sent,
        )

    try:
        host, port, addresses = resolve_checked(url)
    except InvalidWebhookUrl as exc:
        return Outcome(None, "", f"refused: {exc.detail}", 0, None)
    target = _target(url)
    request_headers = {
        "Host": target.host_header,
        "Accept": "*/*",
        # Read as sent: a compressed answer would be expanded past the read cap.
        "Accept-Encoding": "identity",
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        **headers,
    }
    payload = body.encode()
    # What goes on the wire, http.client's Content-Length included (the attempt log shows it).
    sent = {**request_headers, "Content-Length": str(len(payload))}
    try:
        status, received, answer_headers = clients.for_host(host).exchange(
            target, addresses[0], port, payload, request_headers, started + timeout
        )
    except (_Deadline, TimeoutError):  # the socket's timeouts are what is left of the deadline
        return failed(f"timeout: no complete answer within {timeout:g} s")
    except Exception as exc:  # any failure to post is a failed attempt, logged and retried
        return failed(f"{exc.__class__.__name__}: {exc}")
    return Outcome(
        status,
        # PostgreSQL text cannot hold NUL.
        received[:LOG_BYTES].decode("utf-8", "replace").replace("\x00", "\ufffd"),
        "",
        int((time.monotonic() - started) * 1000),
        _retry_after(_header(answer_headers, "Retry-After")),
        _logged_headers(answer_headers),
        sent,
    )


def _header(headers: list[tuple[str, str]], name: str) -> str | None:
    wanted = name.lower()
    return next((value for key, value in headers if key.lower() == wanted), None)


def _logged_headers(headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """An answer's headers as the attempt log keeps them: bounded, text PostgreSQL stores."""
    return [
        (_clean(name)[:200], _clean(value)[:HEADER_BYTES])
        for name, value in headers[:MAX_LOGGED_HEADERS]
    ]


def _clean(value: str) -> str:
    return value.replace("\x00", "\ufffd").encode("utf-8", "replace").decode("utf-8")


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


class _Tls(http.client.HTTPSConnection):
    """A TLS connection to a checked address that presents and verifies the host's name."""

    def __init__(self, address: str, port: int, *, server_name: str, context: ssl.SSLContext,
                 timeout: float) -> None:
        super().__init__(address, port, timeout=timeout, context=context)
        self.server_name = server_name
        self.tls_context = context

    def connect(self) -> None:
        http.client.HTTPConnection.connect(self)
        self.sock = self.tls_context.wrap_socket(self.sock, server_hostname=self.server_name)


def _stale(connection: http.client.HTTPConnection) -> bool:
    """Whether an idle kept-alive connection was closed by its peer (readable while idle)."""
    if connection.sock is None:
        return True
    poller = select.poll()
    poller.register(connection.sock.fileno(), select.POLLIN | select.POLLERR | select.POLLHUP)
    return bool(poller.poll(0))


_Key = tuple[str, str, int]  # scheme, checked address, port
# Ends of a connection before any answer came: the request can go again on a new connection.
_UNANSWERED = (ConnectionResetError, BrokenPipeError, http.client.RemoteDisconnected)


class HostConnections:
    """Kept-alive connections to one receiving host name, shared by the posting threads.

    Built on the standard library's `http.client`: a post costs a third of the CPU httpx spends
    on its URL and header models and h11's state machine, and the delivery needs none of what
    they add. No cookies, no redirects, no proxies from the environment; HTTP/1.1. A connection
    is reused only for the address the host resolved to at this delivery, only if its answer
    was read to the end, and never once the receiver closed it or it idled for IDLE_SECONDS.
    """

    IDLE_SECONDS = 30.0

    def __init__(self, context: ssl.SSLContext, max_idle: int = 32) -> None:
        self._context = context
        self._max_idle = max_idle
        # (key, connection, idle since): the most recently used last
        self._idle: list[tuple[_Key, http.client.HTTPConnection, float]] = []
        self._lock = threading.Lock()
        self._closed = False

    def _take(self, key: _Key) -> http.client.HTTPConnection | None:
        """The most recently used idle connection for `key` that is still open, if any."""
        expired = []
        found = None
        with self._lock:
            horizon = time.monotonic() - self.IDLE_SECONDS
            while self._idle and self._idle[0][2] < horizon:  # oldest first
                expired.append(self._idle.pop(0)[1])
            for index in range(len(self._idle) - 1, -1, -1):
                if self._idle[index][0] == key:
                    found = self._idle.pop(index)[1]
                    break
        for connection in expired:
            connection.close()
        if found is not None and _stale(found):
            found.close()
            return self._take(key)
        return found

    def _give_back(self, key: _Key, connection: http.client.HTTPConnection) -> None:
        with self._lock:
            if not self._closed and len(self._idle) < self._max_idle:
                self._idle.append((key, connection, time.monotonic()))
                return
        connection.close()

    def _open(self, key: _Key, target: _Target, deadline: float) -> http.client.HTTPConnection:
        _scheme, address, port = key
        remaining = max(0.001, deadline - time.monotonic())
        if target.scheme == "https":
            return _Tls(address, port, server_name=target.server_name, context=self._context,
                        timeout=remaining)
        return http.client.HTTPConnection(address, port, timeout=remaining)

    def exchange(
        self, target: _Target, address: str, port: int, body: bytes, headers: dict[str, str],
        deadline: float,
    ) -> tuple[int, bytes, list[tuple[str, str]]]:
        """POST `body`; returns (status, up to 64 KiB of the answer, its headers).

        A connection the receiver resets or closes before answering (a kept-alive one it closed
        just then, a new one its full accept queue turned away) is replaced by a new connection
        once: the request was not answered, and a repeat is what the retry schedule would send.
        Raises _Deadline past `deadline` (time.monotonic()), and what the connection raises.
        """
        key = (target.scheme, address, port)
        connection = self._take(key) or self._open(key, target, deadline)
        for last_try in (False, True):
            try:
                if connection.sock is not None:  # kept alive: give it what is left of the time
                    connection.sock.settimeout(max(0.001, deadline - time.monotonic()))
                connection.request("POST", target.path, body=body, headers=headers)
                response = connection.getresponse()
                break
            except _UNANSWERED:
                connection.close()
                if last_try:
                    raise
                connection = self._open(key, target, deadline)
            except BaseException:
                connection.close()
                raise
        reusable = False
        try:
            received = b""
            while len(received) < MAX_READ:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise _Deadline()
                if connection.sock is not None:
                    connection.sock.settimeout(remaining)
                chunk = response.read1(MAX_READ - len(received))
                if not chunk:
                    response.read()  # nothing left: lets the response release the connection
                    break
                received += chunk
            # Kept for the next post only when the answer was read to its end and the
            # receiver keeps the connection (an informational status leaves its final answer).
            reusable = response.isclosed() and not response.will_close and response.status >= 200
            return response.status, received, response.getheaders()
        finally:
            if reusable:
                self._give_back(key, connection)
            else:
                connection.close()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for _key, connection, _since in idle:
            connection.close()


def _tls_context() -> ssl.SSLContext:
    """Certificates checked as httpx checks them (certifi's roots), HTTP/1.1 announced."""
    context = httpx.create_ssl_context(trust_env=False)
    context.set_alpn_protocols(["http/1.1"])
    return context


class Clients:
    """Kept-alive connections per receiving host name.

    Requests go to a checked IP address with the name in `Host` and TLS SNI, so a pool keyed by
    address would reuse a TLS connection verified for one name to post to another name that
    shares the address; a pool per name never does. Least recently used pools are closed past
    `max_hosts`.
    """

    def __init__(self, max_hosts: int = 256, *, tls_context: ssl.SSLContext | None = None) -> None:
        self.max_hosts = max_hosts
        self._tls_context = tls_context
        self._pools: OrderedDict[str, HostConnections] = OrderedDict()
        self._lock = threading.Lock()

    def for_host(self, host: str) -> HostConnections:
        with self._lock:
            pool = self._pools.get(host)
            if pool is not None:
                self._pools.move_to_end(host)
                return pool
            if self._tls_context is None:
                self._tls_context = _tls_context()
            pool = HostConnections(self._tls_context)
            self._pools[host] = pool
            while len(self._pools) > self.max_hosts:
                _name, evicted = self._pools.popitem(last=False)
                evicted.close()  # posts in flight finish; their connections are closed after
            return pool

    def close(self) -> None:
        with self._lock:
            for pool in self._pools.values():
                pool.close()
            self._pools.clear()

    def __enter__(self) -> Clients:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def new_client() -> Clients:
    return Clients()
