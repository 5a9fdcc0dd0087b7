"""Write relayd's logs as one logfmt line per event (ts=... level=... event=rcpt client=...)."""

from __future__ import annotations

import functools
import json
import logging
import re
import sys
import time

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


def configure(level: str = "info") -> None:
    """Send all logs to stderr in logfmt at level."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(LogfmtFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # aiosmtpd logs every command line at INFO and deprecation chatter at WARNING; relayd logs
    # the events that matter (verdicts, queueing, limits) itself.
    logging.getLogger("mail.log").setLevel(logging.ERROR)
