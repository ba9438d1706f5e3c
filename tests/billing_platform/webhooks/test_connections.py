"""The kept-alive connections deliveries travel on: TLS names, reuse, receivers that hang up."""

from __future__ import annotations

import datetime
import socket
import socketserver
import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from billing_platform.webhooks.delivery import Clients, new_client, post
from tests.support.servers import Reply, running_receiver, serving


def _self_signed(directory: Path, name: str) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ))
    return cert_path, key_path


@contextmanager
def tls_receiver(cert: Path, key: Path) -> Iterator[dict[str, Any]]:
    """An HTTPS receiver on loopback noting the SNI name, Host, path and client port of posts."""
    seen: dict[str, Any] = {"names": [], "requests": []}
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    context.sni_callback = lambda sock, name, ctx: seen["names"].append(name)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            seen["requests"].append((self.headers["Host"], self.path, self.client_address[1]))
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    server.socket = context.wrap_socket(server.socket, server_side=True)
    seen["port"] = server.server_port
    with serving(server):
        yield seen


def test_tls_presents_and_verifies_the_host_name_while_connecting_to_the_checked_address(
    private_ok: Any, tmp_path: Path
) -> None:
    cert, key = _self_signed(tmp_path, "localhost")
    trusted = ssl.create_default_context(cafile=str(cert))
    with tls_receiver(cert, key) as seen, Clients(tls_context=trusted) as clients:
        port = seen["port"]
        first = post(clients, f"https://localhost:{port}/hook?src=billable", "{}", {})
        second = post(clients, f"https://localhost:{port}/hook?src=billable", "{}", {})
        # the certificate names localhost, not the address it was reached at
        by_address = post(clients, f"https://127.0.0.1:{port}/hook", "{}", {})
    assert first.ok and second.ok, (first.error, second.error)
    assert seen["names"][0] == "localhost"
    (host_1, path_1, port_1), (host_2, _path, port_2) = seen["requests"]
    assert host_1 == host_2 == f"localhost:{port}"
    assert path_1 == "/hook?src=billable"
    assert port_1 == port_2  # one kept-alive TLS connection
    assert not by_address.ok and by_address.status_code is None
    assert "CERTIFICATE_VERIFY_FAILED" in by_address.error


def test_a_certificate_no_trusted_root_signed_is_refused(private_ok: Any, tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path, "localhost")
    with tls_receiver(cert, key) as seen, new_client() as clients:
        outcome = post(clients, f"https://localhost:{seen['port']}/hook", "{}", {})
    assert not outcome.ok and "CERTIFICATE_VERIFY_FAILED" in outcome.error
    assert seen["requests"] == []


class _HangingUp(socketserver.ThreadingTCPServer):
    """Answers one request per connection, then closes it without saying so."""

    daemon_threads = True
    allow_reuse_address = True


class _HangUpHandler(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        length = 0
        while (line := self.rfile.readline()) not in (b"\r\n", b""):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
        self.rfile.read(length)
        self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        self.wfile.flush()
        self.request.shutdown(socket.SHUT_RDWR)


def test_a_connection_the_receiver_closed_while_idle_is_not_reused(private_ok: Any) -> None:
    server = _HangingUp(("127.0.0.1", 0), _HangUpHandler)
    with serving(server), new_client() as clients:
        url = f"http://127.0.0.1:{server.server_address[1]}/hook"
        outcomes = []
        for _ in range(3):
            outcomes.append(post(clients, url, "{}", {}))
            time.sleep(0.1)  # the receiver's FIN arrives while the connection idles
    assert [o.status_code for o in outcomes] == [200, 200, 200], [o.error for o in outcomes]


def test_connections_are_reused_only_after_a_complete_answer(private_ok: Any) -> None:
    with running_receiver() as receiver, new_client() as clients:
        receiver.script = [200, 200]
        receiver.default = Reply(200, body=b"x" * (70 * 1024))  # past the read cap
        for _ in range(4):
            assert post(clients, receiver.url, "{}", {}).ok
        requests = receiver.wait_for(4)
    peers = [request.peer for request in requests]
    assert peers[0] == peers[1]  # complete short answers: one connection
    assert peers[2] == peers[1]  # the first long answer still went out on it...
    assert peers[3] != peers[2]  # ...which was then closed, not reused


def test_request_targets_are_percent_encoded(private_ok: Any) -> None:
    with running_receiver() as receiver, new_client() as clients:
        base = receiver.url.rsplit("/", 1)[0]
        assert post(clients, f"{base}/hooks/café?q=a b&r=%41", "{}", {}).ok
        (request,) = receiver.wait_for(1)
    assert request.path == "/hooks/caf%C3%A9?q=a%20b&r=%41"


def test_the_posting_threads_share_kept_alive_connections(private_ok: Any) -> None:
    with running_receiver() as receiver, new_client() as clients:
        def post_some() -> None:
            for _ in range(10):
                assert post(clients, receiver.url, "{}", {}).ok

        threads = [threading.Thread(target=post_some) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        requests = receiver.wait_for(40)
    assert len({request.peer for request in requests}) <= 4


class _SilentFirst(socketserver.ThreadingTCPServer):
    """Closes the first `silent` connections after reading their request, without an answer."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, silent: int) -> None:
        super().__init__(("127.0.0.1", 0), _SilentHandler)
        self.silent = silent
        self.requests = 0


class _SilentHandler(socketserver.StreamRequestHandler):
    server: _SilentFirst

    def handle(self) -> None:
        while True:
            length = 0
            while (line := self.rfile.readline()) not in (b"\r\n", b""):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            if not line:
                return
            self.rfile.read(length)
            self.server.requests += 1
            if self.server.requests <= self.server.silent:
                return  # hang up unanswered
            self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            self.wfile.flush()


def test_a_request_left_unanswered_goes_again_once_on_a_new_connection(
    private_ok: Any,
) -> None:
    once, always = _SilentFirst(silent=1), _SilentFirst(silent=100)
    with serving(once), serving(always), new_client() as clients:
        recovered = post(clients, f"http://127.0.0.1:{once.server_address[1]}/hook", "{}", {})
        refused = post(clients, f"http://127.0.0.1:{always.server_address[1]}/hook", "{}", {})
    assert recovered.ok and once.requests == 2
    assert not refused.ok and always.requests == 2  # once more, not again and again
    assert refused.error.startswith("RemoteDisconnected")
