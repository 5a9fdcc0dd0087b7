"""Serve GET /metrics (Prometheus text) and GET /status (JSON) over a minimal HTTP/1.0 server.

Not prometheus_client's own server: /status reads the daemon's state, which only the event loop may
touch, and that server answers from a thread of its own. The library renders the metrics.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable
from typing import Any

from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

from relayd.logs import kv
from relayd.metrics import Metrics
from relayd.settings import parse_listen

log = logging.getLogger("relayd.http")

_REQUEST_TIMEOUT = 5.0
_MAX_HEADER_LINES = 100


async def start_http(address: str, metrics: Metrics, status: Callable[[], dict[str, Any]]) -> asyncio.Server:
    """Listen on address and answer /metrics and /status until the server is closed."""
    host, port = parse_listen(address)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await asyncio.wait_for(_read_request(reader), _REQUEST_TIMEOUT)
            writer.write(await _respond(request, metrics, status))
            await writer.drain()
        except (TimeoutError, ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
            pass  # a slow or broken client gets no answer; nothing here is worth a log line
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    server = await asyncio.start_server(handle, host, port)
    log.info(kv(event="listening", service="http", address=address))
    return server


async def _read_request(reader: asyncio.StreamReader) -> tuple[str, str]:
    """Return (method, path) of a request, after reading its headers."""
    method, path, _ = (await reader.readuntil(b"\n")).decode("latin-1").split(" ", 2)
    for _ in range(_MAX_HEADER_LINES):
        if (await reader.readuntil(b"\n")).strip() == b"":
            return method, path
    raise ValueError("too many header lines")


async def _respond(request: tuple[str, str], metrics: Metrics, status: Callable[[], dict[str, Any]]) -> bytes:
    method, path = request
    path = path.partition("?")[0]
    if method not in ("GET", "HEAD"):
        return _response(405, "text/plain", b"method not allowed\n", method)
    if path == "/metrics":
        # In a thread: rendering thousands of series (and listing the queue) takes milliseconds that
        # the SMTP sessions on this event loop should not wait for.
        return _response(200, CONTENT_TYPE_PLAIN_0_0_4, await asyncio.to_thread(metrics.render), method)
    if path == "/status":
        return _response(200, "application/json", json.dumps(status(), indent=2).encode() + b"\n", method)
    return _response(404, "text/plain", b"not found: try /metrics or /status\n", method)


def _response(code: int, content_type: str, body: bytes, method: str) -> bytes:
    reason = {200: "OK", 404: "Not Found", 405: "Method Not Allowed"}[code]
    head = f"HTTP/1.0 {code} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
    head += "Cache-Control: no-store\r\nConnection: close\r\n\r\n"
    return head.encode() + (b"" if method == "HEAD" else body)
