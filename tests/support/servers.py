"""HTTP servers in threads of the test process: the project itself, and a webhook receiver."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from socketserver import BaseServer, ThreadingMixIn
from typing import TypeVar
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from django.contrib.staticfiles.handlers import StaticFilesHandler
from django.core.wsgi import get_wsgi_application
from django.db import connections

ServerT = TypeVar("ServerT", bound=BaseServer)


@contextmanager
def serving(server: ServerT) -> Iterator[ServerT]:
    """Serve in a daemon thread inside the block; shut down and closed after."""
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


# --- The project (with static files), for a browser


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


def _closing(app):  # type: ignore[no-untyped-def]
    """Close this thread's database connections after each request (threads are short-lived)."""

    def wrapped(environ, start_response):  # type: ignore[no-untyped-def]
        try:
            return app(environ, start_response)
        finally:
            connections.close_all()

    return wrapped


@contextmanager
def live_server_url() -> Iterator[str]:
    """Serve the project (with static files) on a free loopback port; yields the base URL."""
    app = _closing(StaticFilesHandler(get_wsgi_application()))
    server = make_server(
        "127.0.0.1", 0, app, server_class=_ThreadingServer, handler_class=_QuietHandler
    )
    with serving(server):
        yield f"http://127.0.0.1:{server.server_port}"


# --- A webhook receiver: records requests, answers as told


@dataclass
class Reply:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b'{"ok": true}'
    delay: float = 0.0  # seconds to wait before answering
    trickle: float = 0.0  # seconds between the body's bytes (a receiver that drags its answer)


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    received_at: float = 0.0  # time.time() when the body was read
    peer: tuple[str, int] = ("", 0)  # the sender's address and port: one per connection


@dataclass
class Receiver:
    url: str
    port: int = 0
    requests: list[Received] = field(default_factory=list)
    # Replies (or bare status codes) to give in turn; when exhausted, `default`.
    script: list[int | Reply] = field(default_factory=list)
    default: Reply = field(default_factory=Reply)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def wait_for(self, count: int, timeout: float = 10.0) -> list[Received]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.requests) >= count:
                    return list(self.requests)
            time.sleep(0.02)
        raise AssertionError(f"expected {count} requests, got {len(self.requests)}")

    def count(self) -> int:
        with self.lock:
            return len(self.requests)


@contextmanager
def running_receiver() -> Iterator[Receiver]:
    receiver = Receiver(url="")

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length)
            with receiver.lock:
                receiver.requests.append(
                    Received(
                        self.path,
                        {k.lower(): v for k, v in self.headers.items()},
                        body,
                        time.time(),
                        (str(self.client_address[0]), int(self.client_address[1])),
                    )
                )
                reply = receiver.script.pop(0) if receiver.script else receiver.default
            if isinstance(reply, int):
                reply = Reply(status=reply)
            if reply.delay:
                time.sleep(reply.delay)
            self.send_response(reply.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(reply.body)))
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.end_headers()
            if not reply.trickle:
                self.wfile.write(reply.body)
                return
            for byte in reply.body:
                try:
                    self.wfile.write(bytes([byte]))
                    self.wfile.flush()
                except OSError:  # the sender gave up
                    return
                time.sleep(reply.trickle)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    receiver.port = server.server_port
    receiver.url = f"http://127.0.0.1:{server.server_port}/hook"
    with serving(server):
        yield receiver
