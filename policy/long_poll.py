"""ASGI middleware that turns GET /api/v1/export/relayd/?wait=N into a long poll.

The request goes through Django as usual (authentication, permissions, the export view). While
Django answers 304 (the node already has the latest revision), the answer is held until a revision
commits or N seconds pass, then Django is asked again. The wait is an await on the event loop, not
a thread: one process holds thousands of idle nodes, and Django's own (sync) code runs only for the
few milliseconds of each pass. Every pass authenticates afresh, so a token revoked during a wait
gets its 401 at the next change.
"""

from __future__ import annotations

import asyncio
import urllib.parse

from django.urls import reverse

from policy import revision_feed


class LongPollMiddleware:
    """Hold 304 answers of relayd's export for up to ?wait seconds; pass every other request through."""

    def __init__(self, app) -> None:
        self.app = app
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
                messages = await self._ask_django(scope, disconnected)
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

    async def _ask_django(self, scope, disconnected: asyncio.Future) -> list[dict]:
        """Run the request through Django once; return the messages it would send."""
        messages: list[dict] = []
        body_sent = False

        async def receive():
            nonlocal body_sent
            if not body_sent:
                body_sent = True
                return {"type": "http.request", "body": b"", "more_body": False}
            return await asyncio.shield(disconnected)

        async def collect(message):
            messages.append(message)

        await self.app(scope, receive, collect)
        return messages


async def _disconnect(receive) -> dict:
    """Return the client's http.disconnect message, skipping any request body (a GET has none to speak of)."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return message
