"""Real HTTP servers for tests: the WSGI app in a thread, over the session's test database."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from django.contrib.staticfiles.handlers import StaticFilesHandler
from django.core.wsgi import get_wsgi_application
from django.db import connections


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
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
