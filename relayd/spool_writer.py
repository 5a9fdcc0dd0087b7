"""Write intake's messages to the spool in a process of its own, batching them into group commits.

Measured on two cores: with the fsync threads in intake's process, the event loop and the threads
fight over one GIL and intake manages a third of its rate. In a separate process (run as
python -m relayd.spool_writer SPOOL THREADS) the writer can use its threads freely.

The protocol, over the writer's stdin and stdout:
  intake -> writer: "<id> <envelope line length> <message length>\\n", the envelope line, the message
  writer -> intake: "<id> 0\\n" once the message is durable in queue/, or "<id> <errno> <reason>\\n"
The writer takes every frame already received as one batch, so the sessions waiting at the same
moment share their fsyncs. It exits when its stdin closes, after the batches in progress.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import queue
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any, BinaryIO, Protocol, TypeVar

from relayd import logs
from relayd.children import pipes, spawn
from relayd.logs import kv, repeats
from relayd.spool import Spool, envelope_line

log = logging.getLogger("relayd.spool")

_Frame = tuple[str, bytes, bytes]  # a message's id, envelope line and bytes, as intake sends them
_Staged = list[tuple[str, OSError | None]]  # a batch's ids, each with the error that kept it from the spool
_Item = TypeVar("_Item")  # what a queue carries, for _takings


class MessageStore(Protocol):
    """Where a session stores a message: SpoolWriter in relayd's process, relayd.hub.ParentLink in a worker."""

    async def store(self, envelope: dict[str, Any], message: bytes) -> str: ...


class SpoolWriter:
    """Intake's side: start the writer process and store messages through it; on_stored(id) follows each success."""

    def __init__(self, root: str, threads: int, on_stored: Callable[[str], None] | None = None) -> None:
        self.root = root
        self.threads = threads
        self.on_stored = on_stored
        self._process: asyncio.subprocess.Process | None = None
        self._pending: dict[str, asyncio.Future[None]] = {}
        self._acks: asyncio.Task[None] | None = None
        self._starting = asyncio.Lock()

    async def _ensure_running(self) -> asyncio.subprocess.Process:
        async with self._starting:
            if self._process is None:
                self._process = await spawn(
                    "relayd.spool_writer",
                    self.root,
                    str(self.threads),
                    stdin=asyncio.subprocess.PIPE,
                    stdout=asyncio.subprocess.PIPE,
                )
                self._acks = asyncio.create_task(self._read_acks(self._process))
            return self._process

    async def store(self, envelope: dict[str, Any], message: bytes) -> str:
        """Write a message durably into queue/ and return its id; raise OSError if it could not be."""
        message_id, header = envelope_line(envelope, message)
        await self.store_line(message_id, header, message)
        return message_id

    async def store_line(self, message_id: str, header: bytes, message: bytes) -> None:
        """Write a message whose envelope line (relayd.spool.envelope_line) is made already; raise OSError if not."""
        process = await self._ensure_running()
        done = asyncio.get_running_loop().create_future()
        self._pending[message_id] = done
        try:
            stdin, _ = pipes(process)
            stdin.write(b"%s %d %d\n%s%s" % (message_id.encode(), len(header), len(message), header, message))
            await stdin.drain()
            await done
        except (ConnectionError, RuntimeError) as exc:
            # A writer that just died: asyncio raises ConnectionError, uvloop RuntimeError ("handler is closed").
            raise OSError(errno.EIO, f"spool writer unreachable: {exc}") from None
        finally:
            self._pending.pop(message_id, None)

    async def _read_acks(self, process: asyncio.subprocess.Process) -> None:
        _, stdout = pipes(process)
        while line := await stdout.readline():
            message_id, code, *reason = line.decode().rstrip("\n").split(" ", 2)
            done = self._pending.get(message_id)
            if done is not None and not done.done():
                if code == "0":
                    done.set_result(None)
                    if self.on_stored is not None:
                        self.on_stored(message_id)
                else:
                    done.set_exception(OSError(int(code), " ".join(reason)))
        status = await process.wait()
        if self._process is process:
            self._process = None
            repeats.log(
                log,
                logging.ERROR,
                "spool_writer_exited",
                event="spool_writer_exited",
                status=status,
                failing=len(self._pending),
                action="restarted for the next message",
            )
        # Whatever was not acknowledged may or may not be on disk: the client must hear 451 and retry.
        for done in self._pending.values():
            if not done.done():
                done.set_exception(OSError(errno.EIO, "spool writer exited"))

    async def close(self) -> None:
        """Let the writer finish what it received, and wait for it to exit."""
        process, self._process = self._process, None
        if process is not None:
            pipes(process)[0].close()
            await process.wait()
        if self._acks is not None:
            await self._acks


def _read_frames(stream: BinaryIO, frames: queue.SimpleQueue[_Frame | None]) -> None:
    """Put each frame read from stream into frames as (id, envelope line, message); then None at the end."""
    while header := stream.readline():
        message_id, header_length, message_length = header.decode().split()
        header = stream.read(int(header_length))
        message = stream.read(int(message_length))
        if len(message) != int(message_length):
            break  # intake went away mid-frame: nothing was promised for this message
        frames.put((message_id, header, message))
    frames.put(None)


def _takings(source: queue.SimpleQueue[_Item | None]) -> Iterator[list[_Item]]:
    """Yield all that source holds each time it holds something (waiting for it), until None, the end, arrives."""
    finished = False
    while not finished:
        received = [source.get()]
        while not source.empty():
            received.append(source.get())
        items = [item for item in received if item is not None]
        finished = len(items) < len(received)  # None came: the last item is in
        yield items


def _commit(spool: Spool, staged: queue.SimpleQueue[_Staged | None], acks: BinaryIO | None) -> None:
    """Commit each group of staged batches with one fsync of queue/ and acknowledge them, until None arrives."""
    for groups in _takings(staged):
        outcomes = [(message_id, error) for group in groups for message_id, error in group]
        error = spool.commit([message_id for message_id, failed in outcomes if failed is None])
        lines = []
        for message_id, failed in outcomes:
            failed = failed or error
            if failed is None:
                lines.append(b"%s 0\n" % message_id.encode())
            else:
                reason = (failed.strerror or str(failed)).replace("\n", " ")
                lines.append(f"{message_id} {failed.errno or errno.EIO} {reason}\n".encode())
        if acks is not None:
            try:
                acks.write(b"".join(lines))
                acks.flush()
            except OSError:
                # Intake is gone (killed): the messages committed stay queued and are delivered,
                # though no client heard 250 for them; the rest is finished without acknowledgement.
                log.warning(kv(event="intake_gone", action="committing what was received, then exiting"))
                acks = None


def main(argv: list[str]) -> int:
    """Write frames from stdin into the spool at argv[0] with argv[1] fsync threads until stdin closes.

    Two stages overlap: while one thread fsyncs queue/ for the batches staged so far and acknowledges
    them, the main thread writes, fsyncs and renames the next batch.
    """
    root, threads = argv
    try:
        spool = Spool(root, int(threads))
    except OSError as exc:
        # An unusable spool (a file where a directory belongs, no permission): intake answers 451
        # to the messages in flight and starts a new writer for the next one, which may find it fixed.
        log.error(kv(event="spool_error", root=root, error=exc, action="spool writer exiting"))
        return 1
    frames: queue.SimpleQueue[_Frame | None] = queue.SimpleQueue()
    staged: queue.SimpleQueue[_Staged | None] = queue.SimpleQueue()
    threading.Thread(target=_read_frames, args=(sys.stdin.buffer, frames), daemon=True).start()
    committer = threading.Thread(target=_commit, args=(spool, staged, sys.stdout.buffer))
    committer.start()
    for batch in _takings(frames):
        if batch:
            results = spool.stage(batch)
            staged.put([(message_id, error) for (message_id, _, _), error in zip(batch, results, strict=True)])
    staged.put(None)
    committer.join()
    spool.close()
    return 0


if __name__ == "__main__":
    logs.configure()
    sys.exit(main(sys.argv[1:]))
