"""Keep accepted messages on disk until they are delivered: the spool of docs/spool.md (format 1).

write_batch() writes messages durably: stage() writes each to tmp/, fsyncs them all at once in a pool
of threads (concurrent fsyncs on one file system share journal commits) and renames them into queue/;
commit() then fsyncs queue/ once for the whole batch (group commit). relayd's SMTP intake writes
through relayd/spool_writer.py, a process of its own; the queue runner (relayd/delivery.py) uses
store() for its DSNs, and the synchronous reader API: queued(), read(), read_state(), write_state(),
remove() and quarantine().
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from relayd.files import fsync_directory

FORMAT = 1

_ID = re.compile(r"[0-9a-f]{24}")
_ENVELOPE_KEYS = frozenset(
    ("format", "id", "received_at", "client", "helo", "auth_user", "mail_from", "rcpts", "size", "policy_serial")
)


def new_id() -> str:
    """Return a sortable unique message id: 16 hex digits of time_ns and 8 random hex digits."""
    return f"{time.time_ns():016x}{secrets.token_hex(4)}"


def envelope_line(envelope: dict[str, Any], message: bytes) -> tuple[str, bytes]:
    """Return the id and the JSON line (with its newline) of the complete envelope of message.

    envelope holds the fields of docs/spool.md; id (see new_id()) and received_at default to new
    values, format and size are set here, and the other fields default to null.
    """
    unknown = envelope.keys() - _ENVELOPE_KEYS
    if unknown or not envelope.get("rcpts") or "mail_from" not in envelope:
        raise ValueError(f"an envelope needs mail_from and rcpts, and no unknown keys {sorted(unknown)}")
    complete = {
        "format": FORMAT,
        "id": envelope.get("id") or new_id(),
        "received_at": envelope.get("received_at") or datetime.now(UTC).isoformat(),
        "client": envelope.get("client"),
        "helo": envelope.get("helo"),
        "auth_user": envelope.get("auth_user"),
        "mail_from": envelope["mail_from"],
        "rcpts": envelope["rcpts"],
        "size": len(message),
        "policy_serial": envelope.get("policy_serial"),
    }
    return complete["id"], json.dumps(complete, separators=(",", ":")).encode() + b"\n"


class Spool:
    """The spool directory: tmp/ for files being written, queue/ for complete messages."""

    def __init__(self, root: str | os.PathLike[str], fsync_threads: int = 4) -> None:
        """Use the spool at root, creating its directories if needed."""
        self.root = Path(root)
        self.tmp = self.root / "tmp"
        self.queue = self.root / "queue"
        self.corrupt = self.root / "corrupt"
        for directory in (self.root, self.tmp, self.queue, self.root / "bounce", self.corrupt):
            directory.mkdir(mode=0o700, exist_ok=True)
        fsync_directory(self.root)
        self._fsync_pool = ThreadPoolExecutor(max_workers=fsync_threads, thread_name_prefix="relayd-fsync")

    def remove_leftovers(self) -> int:
        """Remove everything in tmp/ and return how many files that was; only at start-up, before any writer runs."""
        # A file in tmp/ was being written when relayd stopped, and never got its 250.
        removed = 0
        for leftover in self.tmp.iterdir():
            leftover.unlink()
            removed += 1
        return removed

    def write_batch(self, messages: list[tuple[str, bytes, bytes]]) -> list[OSError | None]:
        """Write each (id, envelope line, message) durably into queue/; return None for each success, else its error."""
        results = self.stage(messages)
        staged = [message_id for (message_id, _, _), error in zip(messages, results, strict=True) if error is None]
        error = self.commit(staged)
        return [error if result is None else result for result in results]

    def stage(self, messages: list[tuple[str, bytes, bytes]]) -> list[OSError | None]:
        """Write each (id, envelope line, message) to tmp/, fsync them all, and rename them into queue/.

        Return None for each message staged, else its error; a failed message leaves nothing behind.
        The messages are durable only after commit().
        """
        results: list[OSError | None] = [None] * len(messages)
        temporaries = [self.tmp / f"{message_id}.msg" for message_id, _, _ in messages]
        descriptors: dict[int, int] = {}
        for index, (_, header, message) in enumerate(messages):
            try:
                descriptors[index] = _create(temporaries[index], (header, message))
            except OSError as exc:
                results[index] = exc
        syncs = {index: self._fsync_pool.submit(os.fsync, fd) for index, fd in descriptors.items()}
        for index, sync in syncs.items():
            try:
                sync.result()
            except OSError as exc:
                results[index] = exc
            os.close(descriptors[index])
        for index, (message_id, _, _) in enumerate(messages):
            if results[index] is None:
                try:
                    os.rename(temporaries[index], self.queue / f"{message_id}.msg")
                except OSError as exc:
                    results[index] = exc
            if results[index] is not None:
                temporaries[index].unlink(missing_ok=True)
        return results

    def commit(self, message_ids: list[str]) -> OSError | None:
        """Fsync queue/, making the staged messages durable; on failure remove them and return the error."""
        if not message_ids:
            return None
        try:
            fsync_directory(self.queue)
        except OSError as exc:
            # The clients hear 451 and send the messages again, so these copies must not be delivered too.
            for message_id in message_ids:
                (self.queue / f"{message_id}.msg").unlink(missing_ok=True)
            return exc
        return None

    async def store(self, envelope: dict[str, Any], message: bytes) -> str:
        """Write one message durably into queue/ and return its id; raise OSError if it could not be."""
        message_id, header = envelope_line(envelope, message)
        [error] = await asyncio.to_thread(self.write_batch, [(message_id, header, message)])
        if error is not None:
            raise error
        return message_id

    def close(self) -> None:
        """Stop the fsync threads once the writes in progress are done."""
        self._fsync_pool.shutdown(wait=True)

    def queued(self) -> list[str]:
        """Return the ids of the complete messages in queue/, oldest first."""
        return sorted(name[:-4] for name in os.listdir(self.queue) if name.endswith(".msg"))

    def queue_size(self) -> int:
        """Return how many messages queue/ holds."""
        return len(self.queued())

    def read(self, message_id: str) -> tuple[dict[str, Any], bytes]:
        """Return the envelope and the message bytes; raise ValueError if the file is cut short or malformed."""
        data = self._path(message_id, ".msg").read_bytes()
        header, newline, message = data.partition(b"\n")
        try:
            envelope = json.loads(header)
        except ValueError:
            raise ValueError(f"{message_id}: the envelope line is not JSON") from None
        if not newline or type(envelope) is not dict or envelope.get("format") != FORMAT:
            raise ValueError(f"{message_id}: not a format {FORMAT} spool file")
        if envelope.get("id") != message_id or not envelope.get("rcpts"):
            raise ValueError(f"{message_id}: the envelope names another id or no recipients")
        if len(message) != envelope.get("size"):
            raise ValueError(f"{message_id}: cut short, {len(message)} of {envelope.get('size')} bytes")
        return envelope, message

    def read_state(self, message_id: str) -> dict[str, Any] | None:
        """Return the delivery state, or None if the message was never tried."""
        try:
            state: dict[str, Any] = json.loads(self._path(message_id, ".state").read_bytes())
            return state
        except FileNotFoundError:
            return None

    def write_state(self, message_id: str, state: dict[str, Any]) -> None:
        """Replace the delivery state durably: write a temporary file, fsync it, rename it over the old one."""
        # No directory fsync: after a crash an older state can only repeat deliveries, which
        # at-least-once delivery allows.
        temporary = self.tmp / f"{message_id}.state.{secrets.token_hex(4)}"
        try:
            _write_durably(temporary, (json.dumps(state).encode(),))
            os.rename(temporary, self._path(message_id, ".state"))
        except OSError:
            temporary.unlink(missing_ok=True)
            raise

    def remove(self, message_id: str) -> None:
        """Remove a finished message: its state first, its .msg last."""
        # In this order a crash in between leaves a message without state, which is delivered
        # again (at-least-once), never a state without its message.
        self._path(message_id, ".state").unlink(missing_ok=True)
        self._path(message_id, ".msg").unlink(missing_ok=True)

    def quarantine(self, message_id: str, reason: str) -> None:
        """Move an unreadable message and its state to corrupt/ with a note of why, out of the queue."""
        (self.corrupt / f"{message_id}.reason").write_text(reason + "\n")
        for suffix in (".state", ".msg"):
            source = self._path(message_id, suffix)
            if source.exists():
                os.rename(source, self.corrupt / source.name)

    def _path(self, message_id: str, suffix: str) -> Path:
        # Ids come from file names and envelopes; refusing anything else keeps paths inside queue/.
        if not _ID.fullmatch(message_id):
            raise ValueError(f"{message_id!r} is not a spool id")
        return self.queue / f"{message_id}{suffix}"


def _create(path: Path, chunks: tuple[bytes, ...]) -> int:
    """Create path holding chunks and return its open descriptor; remove it and raise OSError on failure."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        for chunk in chunks:
            view = memoryview(chunk)
            while view:
                view = view[os.write(fd, view) :]
    except OSError:
        os.close(fd)
        path.unlink(missing_ok=True)
        raise
    return fd


def _write_durably(path: Path, chunks: tuple[bytes, ...]) -> None:
    """Create path holding chunks and fsync it."""
    fd = _create(path, chunks)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
