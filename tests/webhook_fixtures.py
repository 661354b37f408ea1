"""A real HTTPS webhook receiver on 127.0.0.1, with a certificate from a CA made for the test
run (trustme): the app trusts it through WEBHOOK_CA_BUNDLE, the setting a deployment with a
private CA uses too. Imported by tests/conftest.py.

The receiver records every request (path, headers, body) and answers with the statuses it is
told (`answer(500, 500, 200)`, then `default`); a 3xx carries a Location to its own
/elsewhere, so a followed redirect would show up as a second request.
"""

import ssl
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import trustme


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


class Receiver:
    def __init__(self, ca: trustme.CA) -> None:
        self.requests: list[Received] = []
        self._answers: list[int] = []
        self.default = 200
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                status = receiver._record(Received(self.path, dict(self.headers), body))
                self.send_response(status)
                if 300 <= status < 400:
                    self.send_header("Location", receiver.url("/elsewhere"))
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                pass

        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def _record(self, received: Received) -> int:
        with self._lock:
            self.requests.append(received)
            return self._answers.pop(0) if self._answers else self.default

    def answer(self, *statuses: int) -> None:
        """Answer the next requests with these statuses, in order (then `default`)."""
        with self._lock:
            self._answers = list(statuses)

    def url(self, path: str = "/hook") -> str:
        return f"https://127.0.0.1:{self.server.server_address[1]}{path}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="session")
def webhook_ca():
    return trustme.CA()


@pytest.fixture
def webhook_receiver(webhook_ca, settings, tmp_path):
    """A receiver whose CA the app trusts (WEBHOOK_CA_BUNDLE); private addresses allowed
    (the tests' default)."""
    bundle = tmp_path / "webhook-ca.pem"
    webhook_ca.cert_pem.write_to_path(str(bundle))
    settings.WEBHOOK_CA_BUNDLE = str(bundle)
    settings.WEBHOOK_ALLOW_PRIVATE = True
    receiver = Receiver(webhook_ca)
    yield receiver
    receiver.close()
