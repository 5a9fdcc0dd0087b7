"""Time the queue runner delivering a backlog: a spool prefilled with N messages, drained into smtp-sink.

Run: .venv/bin/python bench/queue_drain.py [--messages 20000] [--concurrency 20] [--size 1024]
Needs Postfix's smtp-sink (DEBIAN_FRONTEND=noninteractive apt-get install -y postfix). The runner
(relayd/delivery.py) runs in this process, with the smarthost set to the sink, so the figure is
the runner's alone: no intake competes for the CPU. Before the runner kept its own schedule, it
listed the queue after every delivery and a backlog drained in quadratic time; comparing two
sizes (say 5,000 and 20,000) shows whether the time grows linearly. Prints the figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from relayd.delivery import DeliveryConfig, QueueRunner
from relayd.metrics import Metrics
from relayd.spool import Spool, envelope_line

BATCH = 500


def prefill(spool: Spool, messages: int, size: int) -> None:
    """Spool messages to bob@example.com, in group commits of BATCH."""
    body = b"Subject: bench\r\n\r\n" + b"x" * size + b"\r\n"
    envelope = {"mail_from": "sender@client.test", "rcpts": [{"address": "bob@example.com", "route": None}]}
    for start in range(0, messages, BATCH):
        batch = []
        for _ in range(min(BATCH, messages - start)):
            message_id, header = envelope_line(envelope, body)
            batch.append((message_id, header, body))
        spool.write_batch(batch)


async def drain(spool: Spool, sink: str, concurrency: int) -> float:
    """Run the queue runner until the queue is empty; return the seconds it took."""
    stop = asyncio.Event()
    config = DeliveryConfig(smarthost=sink, helo_name="bench.test", concurrency=concurrency)
    runner = asyncio.create_task(QueueRunner(spool, config, Metrics()).run(stop))
    started = time.perf_counter()
    while os.listdir(spool.queue):
        await asyncio.sleep(0.1)
    seconds = time.perf_counter() - started
    stop.set()
    await runner
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.partition("\n")[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=20, help="as --delivery-concurrency")
    parser.add_argument("--size", type=int, default=1024, help="payload bytes per message")
    args = parser.parse_args()
    if not shutil.which("smtp-sink"):
        sys.exit("missing smtp-sink: DEBIAN_FRONTEND=noninteractive apt-get install -y postfix")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    sink_user = ["-u", "postfix"] if os.geteuid() == 0 else []
    sink = subprocess.Popen(["smtp-sink", *sink_user, f"127.0.0.1:{port}", "1000"])
    directory = Path(tempfile.mkdtemp(prefix="relayd-drain-"))
    spool = Spool(directory)
    try:
        prefill(spool, args.messages, args.size)
        load_average = os.getloadavg()[0]
        seconds = asyncio.run(drain(spool, f"127.0.0.1:{port}", args.concurrency))
    finally:
        sink.terminate()
        sink.wait()
        spool.close()
        shutil.rmtree(directory, ignore_errors=True)
    rate = args.messages / seconds
    print(
        f"drained {args.messages} messages of {args.size} bytes, {args.concurrency} at a time, in {seconds:.1f} s"
        f" = {rate:.0f} msg/s  ({os.cpu_count()} CPUs, load average before: {load_average:.1f})"
    )


if __name__ == "__main__":
    main()
