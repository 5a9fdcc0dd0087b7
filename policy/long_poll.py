"""ASGI middleware that turns GET /api/v1/export/relayd/?wait=N into a long poll.

The request goes through Django as usual (authentication, permissions, the export view). While
Django answers 304 (the node already has the latest revision), the answer is held until a revision
commits or N seconds pass, then Django is asked again. The wait is an await on the event loop, not
a thread: one process holds thousands of idle nodes, and Django's own (sync) code runs only for the
few milliseconds of each pass. Every pass authenticates afresh, so a token revoked during a wait
gets its 401 at the next change.

A pass is Django's own middleware and view, run in sync mode in one hop to a worker thread
(DjangoPass), not through Django's ASGI handler: that one hops between the event loop and a thread
it starts for each request about six times per request, which doubled a pass's CPU here (3.5 to
4.2 ms against 1.75 ms), and at each change every node of the fleet makes a pass at once.
"""

from __future__ import annotations

import asyncio
import io
import urllib.parse
from concurrent.futures import ThreadPoolExecutor

from django.core import signals
from django.core.handlers.asgi import ASGIHandler, ASGIRequest, get_script_prefix
from django.core.handlers.base import BaseHandler
from django.urls import reverse, set_script_prefix

from policy import revision_feed


class LongPollMiddleware:
    """Hold 304 answers of relayd's export for up to ?wait seconds; pass every other request through."""

    def __init__(self, app) -> None:
        self.app = app
        self.django = DjangoPass()
        self._path: str | None = None

    async def __call__(self, scope, receive, send) -> None:
        wait = self._wait(scope)
        if not wait:
            await self.app(scope, receive, send)
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        feed = revision_feed.feed()
        disconnected = asyncio.ensure_future(_disconnect(receive))
        try:
            while True:
                change = feed.next_change()  # before Django reads the latest revision, so no commit slips by
                messages = await self.django(scope)
                remaining = deadline - loop.time()
                if messages[0].get("status") != 304 or remaining <= 0 or disconnected.done():
                    break
                await feed.wait(change, remaining, disconnected)
            if not disconnected.done():
                for message in messages:
                    await send(message)
        finally:
            disconnected.cancel()

    def _wait(self, scope) -> int:
        if scope["type"] != "http" or scope["method"] != "GET":
            return 0
        if self._path is None:
            self._path = reverse("api:export", kwargs={"fmt": "relayd"})
        if scope["path"] != self._path:
            return 0
        query = urllib.parse.parse_qs(scope.get("query_string", b"").decode("latin-1"))
        try:
            return revision_feed.parse_wait(query.get("wait", [None])[-1])
        except ValueError:
            return 0  # the view answers the bad value with its 400


class DjangoPass:
    """Answer a bodiless request with Django's middleware and views, in sync mode, in one hop to a thread."""

    # The passes of a change run together; past the database pool's size (RELAYADMIN_DB_POOL) more
    # threads would only wait for a connection, and the GIL runs one at a time anyway.
    THREADS = 4

    def __init__(self) -> None:
        self.handler = BaseHandler()
        self.handler.load_middleware(is_async=False)
        self.executor = ThreadPoolExecutor(self.THREADS, thread_name_prefix="long-poll")

    async def __call__(self, scope) -> list[dict]:
        """Return the ASGI messages of Django's answer to the request in scope."""
        return await asyncio.get_running_loop().run_in_executor(self.executor, self._answer, scope)

    def _answer(self, scope) -> list[dict]:
        # What Django's ASGI handler does around its middleware chain, minus the hops.
        set_script_prefix(get_script_prefix(scope))
        signals.request_started.send(sender=ASGIHandler, scope=scope)
        response = self.handler.get_response(ASGIRequest(scope, io.BytesIO()))
        try:
            headers = [(name.encode("ascii"), value.encode("latin1")) for name, value in response.items()]
            headers += [
                (b"set-cookie", cookie.output(header="").encode("ascii").strip())
                for cookie in response.cookies.values()
            ]
            body = b"".join(response)
        finally:
            response.close()  # request_finished: the database connection goes back to the pool
        return [
            {"type": "http.response.start", "status": response.status_code, "headers": headers},
            {"type": "http.response.body", "body": body},
        ]


async def _disconnect(receive) -> dict:
    """Return the client's http.disconnect message, skipping any request body (a GET has none to speak of)."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return message
