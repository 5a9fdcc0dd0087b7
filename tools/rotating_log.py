"""Copy stdin to a log file that rotates at a size limit, so `make run`'s var/log never grows without bound.

Usage: python tools/rotating_log.py FILE [MAX_BYTES] [BACKUPS]   (defaults: 10 MB, 3 old files: FILE.1 ... FILE.3)
"""

import logging
import signal
import sys
from logging.handlers import RotatingFileHandler


def main(argv: list[str]) -> int:
    path = argv[1]
    max_bytes = int(argv[2]) if len(argv) > 2 else 10_000_000
    backups = int(argv[3]) if len(argv) > 3 else 3
    handler = RotatingFileHandler(path, maxBytes=max_bytes, backupCount=backups, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(message)s"))
    # Ctrl-C in `make run` reaches the whole process group: keep copying until relayd has said its last line.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # Lines arrive already formatted by relayd; write each as it comes, whatever its length.
    for line in sys.stdin:
        handler.emit(logging.makeLogRecord({"msg": line.rstrip("\n")}))
    handler.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
