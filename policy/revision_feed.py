"""Wake long-polling relayd nodes when a revision commits (GET /api/v1/export/relayd/?wait=N).

On PostgreSQL, record_revision() sends NOTIFY on CHANNEL inside the revision's transaction:
PostgreSQL delivers it when, and only if, that transaction commits, to every app server that
LISTENs, so any number of app servers wake together with no protocol of our own. Each ASGI process
holds one LISTEN connection, shared by all the long polls it serves.

SQLite has no notifications. A commit made in this process wakes its waiters at once (on_commit);
a commit made by another process (a gunicorn worker beside the ASGI server) is seen by one query per
process every SQLITE_CHECK_INTERVAL while anybody waits.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from asgiref.sync import sync_to_async
from django.db import connection, transaction

log = logging.getLogger("relayadmin.revision_feed")

CHANNEL = "relayadmin_revision"
# Longer than relayd asks for (30 s) and shorter than the usual proxy read timeout (60 s at nginx's
# default; docs/deploy/nginx-relayadmin.conf raises it for this location).
MAX_WAIT = 55
SQLITE_CHECK_INTERVAL = 0.25
# After losing the LISTEN connection: wait this long before reconnecting, waking everybody once
# connected again (a commit may have happened meanwhile).
RECONNECT_DELAY = 1.0


def parse_wait(text: str | None) -> int:
    """Return the seconds a long poll may wait for ?wait=text (0 without one); raise ValueError with a message."""
    if text is None or text == "":
        return 0
    if not text.isascii() or not text.isdigit():
        raise ValueError(f"wait must be a whole number of seconds from 0 to {MAX_WAIT}.")
    seconds = int(text)
    if seconds > MAX_WAIT:
        raise ValueError(f"wait may be at most {MAX_WAIT} seconds.")
    return seconds


def announce() -> None:
    """Tell every long poll, after the current transaction commits, that a new revision is there."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            # Transactional: listeners hear it at the commit, never for a rolled-back revision.
            cursor.execute("SELECT pg_notify(%s, '')", [CHANNEL])
    transaction.on_commit(_wake_this_process)


class Feed:
    """One per ASGI process and event loop: an event replaced by a fresh one at every change."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._next = asyncio.Event()
        self._waiters = 0
        self._task: asyncio.Task | None = None

    @property
    def waiting(self) -> int:
        """Return how many long polls wait now."""
        return self._waiters

    def next_change(self) -> asyncio.Event:
        """Return the event that the next change sets; take it before reading the state it may change."""
        self._start()
        return self._next

    def wake(self) -> None:
        """Set the current event (waking its waiters) and start a new one."""
        changed, self._next = self._next, asyncio.Event()
        changed.set()

    async def wait(self, change: asyncio.Event, timeout: float, give_up: asyncio.Future | None = None) -> None:
        """Wait until change is set, timeout seconds pass or give_up is done."""
        self._waiters += 1
        waits: list[asyncio.Future[object]] = [asyncio.ensure_future(change.wait())]
        if give_up is not None:
            waits.append(give_up)
        try:
            await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self._waiters -= 1
            waits[0].cancel()

    def _start(self) -> None:
        if self._task is None or self._task.done():
            watch = self._listen if connection.vendor == "postgresql" else self._check_sqlite
            self._task = self.loop.create_task(watch())

    async def _listen(self) -> None:
        import psycopg  # only on PostgreSQL, where Django needs it too

        params = await sync_to_async(connection.get_connection_params)()
        params = {key: value for key, value in params.items() if key not in ("cursor_factory", "context")}
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(**params, autocommit=True) as listener:
                    await listener.execute(f"LISTEN {CHANNEL}")
                    self.wake()  # a commit may have happened before LISTEN took effect
                    async for _ in listener.notifies():
                        self.wake()
            except (psycopg.Error, OSError) as exc:
                log.warning("revision feed: LISTEN %s failed (%s); reconnecting", CHANNEL, exc)
            await asyncio.sleep(RECONNECT_DELAY)

    async def _check_sqlite(self) -> None:
        # A wake-up too many costs each waiter one 304 from Django and it waits again; one too few
        # leaves a node behind. So the first check wakes everybody (a commit may have come between
        # a waiter's own read and this one), and the last serial seen is kept while nobody waits.
        seen: object = object()
        while True:
            if self._waiters:
                latest = await sync_to_async(_latest_serial)()
                if latest != seen:
                    self.wake()
                seen = latest
            await asyncio.sleep(SQLITE_CHECK_INTERVAL)


_feed: Feed | None = None


def feed() -> Feed:
    """Return this process's feed for the running event loop."""
    global _feed
    loop = asyncio.get_running_loop()
    if _feed is None or _feed.loop is not loop:
        _feed = Feed(loop)
    return _feed


def _wake_this_process() -> None:
    current = _feed
    if current is not None and not current.loop.is_closed():
        # Commits run in worker threads; the feed's event belongs to its loop.
        with contextlib.suppress(RuntimeError):
            current.loop.call_soon_threadsafe(current.wake)


def _latest_serial() -> int | None:
    from policy.models import PolicyRevision

    return PolicyRevision.objects.order_by("-serial").values_list("serial", flat=True).first()
