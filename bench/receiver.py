"""A local webhook receiver for the webhooks benchmark: `python -m bench.receiver PORT`.

Answers every POST with 204 at once and notes when it arrived; `GET /arrivals` returns
`[[epoch seconds, usage id or event id], ...]` and `DELETE /arrivals` forgets them.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

_ARRIVALS: list[tuple[float, str]] = []
_LOCK = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        arrived = time.time()
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            event = json.loads(body)
            data = event.get("data") or {}
            ident = str(data.get("usage_id") or data.get("id") or event.get("id") or "")
        except ValueError:
            ident = ""
        with _LOCK:
            _ARRIVALS.append((arrived, ident))
        self.send_response(204)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self) -> None:
        with _LOCK:
            payload = json.dumps(_ARRIVALS).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def do_DELETE(self) -> None:
        with _LOCK:
            _ARRIVALS.clear()
        self.send_response(204)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        return


def main() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler)
    server.daemon_threads = True
    server.serve_forever()


if __name__ == "__main__":
    main()
