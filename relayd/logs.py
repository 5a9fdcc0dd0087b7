"""Write relayd's logs as one logfmt line per event (ts=... level=... event=rcpt client=...)."""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import re
import sys
import time
from collections.abc import Callable
from typing import TextIO

# A value made only of these characters is written bare; anything else is quoted, so that
# client-controlled text (HELO names, addresses) can neither split a line nor forge a key.
_BARE = re.compile(r"[!#-<>-\[\]-~]+")


def quote(value: object) -> str:
    """Return value as a logfmt value: "-" for None, bare when safe, else a JSON string."""
    if value is None:
        return "-"
    text = value if isinstance(value, str) else str(value)
    if _BARE.fullmatch(text):
        return text
    return json.dumps(text)


def kv(**fields: object) -> str:
    """Return the fields as key=value pairs, in the order given."""
    return " ".join(f"{key}={quote(value)}" for key, value in fields.items())


class Repeats:
    """Log an expected failure once per window, and count the repeats in between instead of logging each.

    A full disk or a flood of broken TLS handshakes must not fill the log: the first event of a key
    is logged, the next ones in the following window are only counted, and the first event after
    the window carries the count (repeats="312 more in the last minute").
    """

    def __init__(self, window: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.window = window
        self.clock = clock
        self._seen: dict[str, tuple[float, int]] = {}  # key -> (when it was last logged, repeats since)

    def log(self, logger: logging.Logger, level: int, key: str, **fields: object) -> bool:
        """Log the fields as one line unless key was logged less than window seconds ago; return whether logged."""
        now = self.clock()
        logged_at, repeats = self._seen.get(key, (None, 0))
        if logged_at is not None and now - logged_at < self.window:
            self._seen[key] = (logged_at, repeats + 1)
            return False
        if repeats:
            span = "minute" if self.window == 60 else f"{self.window:g} s"
            fields["repeats"] = f"{repeats} more in the last {span}"
        self._seen[key] = (now, 0)
        if len(self._seen) > 10_000:
            # Keys are event names plus at most an error kind; this only guards against a bug.
            self._seen.clear()
        logger.log(level, kv(**fields))
        return True

    def reset(self) -> None:
        """Forget every key, as a new process would (for tests)."""
        self._seen.clear()


# One per process: the rate limit is about what reaches the log, whoever writes it.
repeats = Repeats()


class LogfmtFormatter(logging.Formatter):
    """Prefix each record with its time, level and logger, and keep every record on one line."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if "\n" in message or "\r" in message:
            message = "msg=" + quote(message)
        moment = f"{_utc_second(int(record.created))}.{int(record.msecs):03d}Z"
        line = f"ts={moment} level={record.levelname.lower()} logger={record.name} {message}"
        if record.exc_info:
            line += " exc=" + quote(self.formatException(record.exc_info))
        return line


@functools.lru_cache(maxsize=1)
def _utc_second(second: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))


class TurnFlushingHandler(logging.StreamHandler[TextIO]):
    """Write records to a descriptor (stderr), flushed once per turn of the running event loop, not per record.

    Each flush is a write(2); under load one turn of relayd's loop serves many sessions, whose lines
    then go out together. Off a loop (threads, start-up, exit) a record is flushed at once. A process
    killed outright loses at most the lines of the turn it was in.
    """

    def __init__(self, fd: int) -> None:
        # sys.stderr flushes at every newline; the handler keeps a block-buffered stream of its own,
        # open as long as the process.
        stream = open(fd, "w", encoding="utf-8", errors="backslashreplace", closefd=False)  # noqa: SIM115
        super().__init__(stream)
        self._pending: asyncio.AbstractEventLoop | None = None  # the loop that will flush at the end of its turn

    def flush(self) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            super().flush()
            return
        if self._pending is not loop:
            self._pending = loop
            loop.call_soon(self._flush_now)

    def _flush_now(self) -> None:
        self._pending = None
        super().flush()


def configure(level: str = "info") -> None:
    """Send all logs to stderr in logfmt at level."""
    handler = TurnFlushingHandler(sys.stderr.fileno())
    handler.setFormatter(LogfmtFormatter())
    # relayd's lines carry neither the caller's source line nor the thread or process: not gathering
    # them saves a few microseconds per record (the logging HOWTO, "Optimization").
    logging._srcfile = None
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # aiosmtpd logs every command line at INFO and deprecation chatter at WARNING; relayd logs
    # the events that matter (verdicts, queueing, limits) itself.
    logging.getLogger("mail.log").setLevel(logging.ERROR)
