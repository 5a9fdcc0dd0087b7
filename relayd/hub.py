"""Connect an intake worker to the parent relayd, which holds what all workers share.

The parent owns the client limits (relayd.limits.ClientLimits), the spool writer (and through it
the queue runner) and the metrics. Each worker reaches them over a socket pair, with one request
a line:
  worker -> parent: "A <req> <key>" admit a session      -> "<req> <refusal or -> <greeting pass 0|1>"
                    "D 0 <key>"     a session ended (no reply)
                    "G 0 <key>"     key waited for the greeting (no reply)
                    "Q <req> <key>" is AUTH refused?        -> "<req> <0|1>"
                    "F <req> <key>" an AUTH failure         -> "<req> <delay> <failures>"
                    "M 0 <json>"    counter increments [[name, labels, count], ...] (no reply)
                    "S <req> <id> <envelope line length> <message length>", the envelope line, the message
                                    store durably           -> "<req> 0" or "<req> <errno> <reason>"
A worker whose parent is gone stops (see relayd.workers); when a worker dies, the parent releases
the sessions it had admitted, so a crash never leaves a client's count too high.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import json
import logging
from collections import Counter
from collections.abc import Callable
from typing import Any

from relayd.limits import ClientLimits
from relayd.logs import kv
from relayd.metrics import Metrics
from relayd.spool import envelope_line
from relayd.spool_writer import SpoolWriter

log = logging.getLogger("relayd.hub")

# A worker sends its counter increments in one line at most this many seconds after the first:
# a line per increment cost a relay-denied session a fifth more CPU.
METRICS_DELAY = 0.1


async def serve_worker(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    limits: ClientLimits,
    spool: SpoolWriter,
    metrics: Metrics,
) -> None:
    """Answer one worker's requests until it goes away; then release the sessions it still had."""
    held: Counter[str] = Counter()
    stores: set[asyncio.Task[None]] = set()

    reply = _Batched(writer).line

    try:
        while line := await reader.readline():
            op, request, argument = line.decode().rstrip("\n").split(" ", 2)
            if op == "A":
                refusal, greet_pass = limits.admit_now(argument)
                if refusal is None:
                    held[argument] += 1
                reply(f"{request} {refusal or '-'} {int(greet_pass)}")
            elif op == "D":
                if held[argument] > 0:
                    held[argument] -= 1
                    limits.release(argument)
            elif op == "M":
                for name, labels, count in json.loads(argument):
                    metrics.inc(name, count, **labels)
            elif op == "S":
                message_id, header_length, message_length = argument.split()
                header = await reader.readexactly(int(header_length))
                message = await reader.readexactly(int(message_length))
                # Stores run concurrently, so that the spool writer can commit them as one group.
                task = asyncio.create_task(_store(spool, request, message_id, header, message, reply))
                stores.add(task)
                task.add_done_callback(stores.discard)
            elif op == "G":
                limits.greet_passed(argument)
            elif op == "Q":
                reply(f"{request} {int(limits.auth_throttle.refused(argument))}")
            elif op == "F":
                delay, failures = limits.auth_failed_now(argument)
                reply(f"{request} {delay!r} {failures}")
    except (ConnectionError, asyncio.IncompleteReadError, ValueError) as exc:
        log.warning(kv(event="worker_link_broken", error=exc))
    finally:
        for key, count in held.items():
            for _ in range(count):
                limits.release(key)
        for task in stores:
            task.cancel()
        writer.close()


async def _store(
    spool: SpoolWriter, request: str, message_id: str, header: bytes, message: bytes, reply: Callable[[str], None]
) -> None:
    try:
        await spool.store_line(message_id, header, message)
    except OSError as exc:
        reason = (exc.strerror or str(exc)).replace("\n", " ")
        reply(f"{request} {exc.errno or errno.EIO} {reason}")
    else:
        reply(f"{request} 0")


class _Batched:
    """Write the lines of one turn of the event loop to a stream in one go.

    Each write is a system call and wakes the process at the other end; under load many sessions
    speak to the parent in the same turn, and one write serves them all.
    """

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self._writer = writer
        self._lines: list[bytes] = []

    def line(self, text: str, payload: bytes = b"") -> None:
        """Queue text as a line, followed by payload, for the end of this turn."""
        if not self._lines:
            asyncio.get_running_loop().call_soon(self._flush)
        self._lines.append(text.encode() + b"\n" + payload)

    def _flush(self) -> None:
        if not self._writer.is_closing():
            self._writer.write(b"".join(self._lines))
        self._lines.clear()


class ParentLink:
    """A worker's view of the parent: the client limits, the spool and the metrics, each as the parent's own."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, on_lost: Callable[[], None]) -> None:
        self._reader = reader
        self._writer = writer
        self._on_lost = on_lost
        self._replies: dict[int, asyncio.Future[list[str]]] = {}
        self._next = 0
        self._out = _Batched(writer)
        self._task = asyncio.create_task(self._read_replies())
        self._counts: dict[tuple[str, tuple[tuple[str, str], ...]], int] = {}
        self._flush: asyncio.TimerHandle | None = None
        self.lost = False

    async def _read_replies(self) -> None:
        with contextlib.suppress(ConnectionError):
            while line := await self._reader.readline():
                request, *fields = line.decode().rstrip("\n").split(" ")
                future = self._replies.pop(int(request), None)
                if future is not None and not future.done():
                    future.set_result(fields)
        self.lost = True
        for future in self._replies.values():
            if not future.done():
                future.set_exception(ConnectionError("relayd's parent process is gone"))
        self._replies.clear()
        self._on_lost()

    def _send(self, line: str, payload: bytes = b"") -> None:
        self._out.line(line, payload)

    def _request(self, op: str, argument: str, payload: bytes = b"") -> asyncio.Future[list[str]]:
        """Send a request; return the future of the parent's reply fields."""
        if self.lost:
            raise ConnectionError("relayd's parent process is gone")
        self._next += 1
        request = self._next
        future: asyncio.Future[list[str]] = asyncio.get_running_loop().create_future()
        self._replies[request] = future
        self._send(f"{op} {request} {argument}", payload)
        return future

    async def _ask(self, op: str, argument: str, payload: bytes = b"") -> list[str]:
        return await self._request(op, argument, payload)

    # The client limits, as relayd.limits.ClientLimits.

    async def admit(self, key: str) -> tuple[str | None, bool]:
        """Count a new session of key in the parent; see ClientLimits.admit_now."""
        try:
            reply = self._request("A", key)
            try:
                refusal, greet_pass = await asyncio.shield(reply)
            except asyncio.CancelledError:
                # The session ended (its client left) while the parent was counting it: once the
                # parent has answered, a session it admitted is released, or its count would stay.
                reply.add_done_callback(functools.partial(self._release_if_admitted, key))
                raise
        except ConnectionError:
            # Without the parent no limit can be checked: refuse rather than admit unchecked.
            return "max_connections", False
        return (None if refusal == "-" else refusal), greet_pass == "1"  # noqa: S105 (a flag, not a password)

    def _release_if_admitted(self, key: str, reply: asyncio.Future[list[str]]) -> None:
        if reply.exception() is None and reply.result()[0] == "-":
            self.release(key)

    def release(self, key: str) -> None:
        """Forget one admitted session of key."""
        self._send(f"D 0 {key}")

    def greet_passed(self, key: str) -> None:
        """Record that key waited for the greeting."""
        self._send(f"G 0 {key}")

    async def auth_refused(self, key: str) -> bool:
        """Return whether key has failed AUTH too often to try now (True when the parent is gone)."""
        try:
            (refused,) = await self._ask("Q", key)
        except ConnectionError:
            return True
        return refused == "1"

    async def auth_failed(self, key: str) -> tuple[float, int]:
        """Record an AUTH failure of key; return the tarpit delay and the failures that count."""
        try:
            delay, failures = await self._ask("F", key)
        except ConnectionError:
            return 0.0, 0
        return float(delay), int(failures)

    # The spool, as relayd.spool_writer.SpoolWriter.

    async def store(self, envelope: dict[str, Any], message: bytes) -> str:
        """Have the parent's spool writer store a message durably; return its id or raise OSError."""
        message_id, header = envelope_line(envelope, message)
        try:
            code, *reason = await self._ask("S", f"{message_id} {len(header)} {len(message)}", header + message)
        except ConnectionError as exc:
            raise OSError(errno.EIO, str(exc)) from None
        if code != "0":
            raise OSError(int(code), " ".join(reason))
        return message_id

    # The metrics, as relayd.metrics.Metrics (counters only: gauges are the parent's).

    def inc(self, name: str, /, **labels: str) -> None:
        """Add one to the counter name with these labels, in the parent's metrics (within METRICS_DELAY)."""
        key = (name, tuple(labels.items()))
        self._counts[key] = self._counts.get(key, 0) + 1
        if self._flush is None:
            self._flush = asyncio.get_running_loop().call_later(METRICS_DELAY, self._send_counts)

    def _send_counts(self) -> None:
        self._flush = None
        counts = [[name, dict(labels), count] for (name, labels), count in self._counts.items()]
        self._counts.clear()
        self._send(f"M 0 {json.dumps(counts, separators=(',', ':'))}")

    def gauge_from(self, name: str, read: Callable[[], float]) -> None:
        """Ignore a gauge: the parent computes its own."""

    async def close(self) -> None:
        """Send the counts not sent yet and close the link."""
        if self._flush is not None:
            self._flush.cancel()
            self._send_counts()
        await asyncio.sleep(0)  # the batch just queued goes out at the end of this turn
        self._writer.close()
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
