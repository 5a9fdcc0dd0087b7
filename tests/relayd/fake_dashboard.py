"""The dashboard's side of relayd's HTTP contract, served on 127.0.0.1 from a thread: the export and node reports."""

from __future__ import annotations

import hashlib
import json
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TOKEN = "rlyd-test-4f1c2b9e8d7a6c5b4a39281706f5e4d3"
EXPORT_PATH = "/api/v1/export/relayd/"
DAEMONS_PATH = "/api/v1/daemons/"


class FakeDashboard:
    """Serve a snapshot with its ETag (304 to a matching If-None-Match) and take node reports, as policy/api does.

    Every request needs "Authorization: Token TOKEN", or gets 401. redirect_to makes the export
    answer 302 to that path instead. With long_poll, a request with ?wait=N whose If-None-Match is
    the current ETag is held until publish() or N seconds, as the dashboard's ASGI server does;
    without it, ?wait is ignored, as a plain WSGI server does.
    """

    def __init__(self, port: int = 0, long_poll: bool = False) -> None:
        self.snapshot = b""
        self.redirect_to: str | None = None
        self.long_poll = long_poll
        # The ?wait of each export request (None without one), and how many were held and then
        # answered by a publish().
        self.waits: list[int | None] = []
        self.woken = 0
        self.published = threading.Condition()
        self.stopped = False
        # (method, path, headers, status answered) of each request, in order.
        self.requests: list[tuple[str, str, dict[str, str], int]] = []
        self.reports: list[dict] = []
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", port), _Handler)
        self.server.dashboard = self
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{EXPORT_PATH}"

    @property
    def etag(self) -> str:
        return f'"{hashlib.sha256(self.snapshot).hexdigest()}"'

    def publish(self, document: dict | str) -> None:
        """Serve document (JSON, or text as is) from now on, answering the requests held for a change."""
        with self.published:
            self.snapshot = (document if isinstance(document, str) else json.dumps(document)).encode()
            self.published.notify_all()

    def holding(self) -> int:
        """Return how many requests are held now."""
        with self.lock:
            return self._held

    _held = 0

    def answered(self, method: str = "GET") -> list[int]:
        """Return the status of each request made with method."""
        with self.lock:
            return [status for made, _, _, status in self.requests if made == method]

    def stop(self) -> None:
        """Stop serving; held requests end with their connection closed and no answer, as when a server dies."""
        with self.published:
            self.stopped = True
            self.published.notify_all()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


class _Handler(BaseHTTPRequestHandler):
    server: ThreadingHTTPServer

    def log_message(self, format, *args) -> None:
        pass  # the test output is for the tests

    def do_GET(self) -> None:
        dashboard = self.server.dashboard
        self.path, _, query = self.path.partition("?")
        wait = urllib.parse.parse_qs(query).get("wait")
        if self.path == EXPORT_PATH:
            with dashboard.lock:
                dashboard.waits.append(int(wait[-1]) if wait else None)
        if wait and dashboard.long_poll and self._authorized() and self.path == EXPORT_PATH:
            self._hold(int(wait[-1]))
        if dashboard.stopped:
            self.close_connection = True
        elif not self._authorized():
            self._answer(401, b'{"detail": "Invalid token."}')
        elif self.path != EXPORT_PATH:
            self._answer(404, b'{"detail": "Not found."}')
        elif dashboard.redirect_to:
            self._answer(302, b"", {"Location": dashboard.redirect_to})
        elif self.headers.get("If-None-Match") == dashboard.etag:
            self._answer(304, None, {"ETag": dashboard.etag})
        else:
            self._answer(200, dashboard.snapshot, {"ETag": dashboard.etag})

    def _hold(self, seconds: int) -> None:
        dashboard = self.server.dashboard
        with dashboard.published:
            if self.headers.get("If-None-Match") != dashboard.etag:
                return
            with dashboard.lock:
                dashboard._held += 1
            changed = dashboard.published.wait_for(
                lambda: dashboard.stopped or self.headers.get("If-None-Match") != dashboard.etag, seconds
            )
            with dashboard.lock:
                dashboard._held -= 1
                dashboard.woken += changed

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if not self._authorized():
            self._answer(401, b'{"detail": "Invalid token."}')
        elif self.path != DAEMONS_PATH:
            self._answer(404, b'{"detail": "Not found."}')
        else:
            with self.server.dashboard.lock:
                self.server.dashboard.reports.append(json.loads(body))
            self._answer(201, body)

    def _authorized(self) -> bool:
        return self.headers.get("Authorization") == f"Token {TOKEN}"

    def _answer(self, status: int, body: bytes | None, headers: dict[str, str] | None = None) -> None:
        dashboard = self.server.dashboard
        with dashboard.lock:
            dashboard.requests.append((self.command, self.path, dict(self.headers), status))
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if body is not None:
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body:
            self.wfile.write(body)
