"""Run the queue runner (relayd/delivery.py) in a process of its own, and supervise it from relayd.

A process of its own because delivery runs its SMTP sessions in threads, which would contend with
intake's event loop for the GIL. The child (python -m relayd.runner SETTINGS_JSON) watches the
policy file itself, for the routes of bounce recipients, and reports each counter increment as a
JSON line on stdout ({"name": ..., "labels": {...}}), which relayd adds to the metrics it serves.
relayd writes the id of each message it spools to the child's stdin, one a line, so that new mail
is delivered at once without the child rescanning the queue directory for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
from collections.abc import Callable
from typing import TextIO

import uvloop

from relayd import logs
from relayd.children import pipes, spawn
from relayd.delivery import DeliveryConfig, QueueRunner
from relayd.logs import kv
from relayd.metrics import Metrics
from relayd.policy_source import PolicySource
from relayd.settings import Settings, settings_from_json, settings_to_json
from relayd.spool import Spool

log = logging.getLogger("relayd.runner")

RESTART_DELAY = 1.0


class Runner:
    """relayd's side: start the queue runner process, count what it reports, restart it if it dies."""

    def __init__(self, settings: Settings, metrics: Metrics) -> None:
        self.settings = settings
        self.metrics = metrics
        self._process: asyncio.subprocess.Process | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._stopping = False

    def start(self) -> None:
        """Start the queue runner and keep it running until stop()."""
        self._supervisor = asyncio.create_task(self._supervise())

    async def _supervise(self) -> None:
        while not self._stopping:
            # The runner's stdin stays open while relayd lives; at EOF (relayd killed) it stops too.
            self._process = await spawn(
                "relayd.runner",
                settings_to_json(self.settings),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
            )
            _, stdout = pipes(self._process)
            while line := await stdout.readline():
                try:
                    increment = json.loads(line)
                except ValueError:
                    continue  # the last line of a runner killed as it wrote it
                self.metrics.inc(increment["name"], **increment["labels"])
            status = await self._process.wait()
            if not self._stopping:
                log.error(kv(event="runner_exited", status=status, action=f"restarting in {RESTART_DELAY:g} s"))
                await asyncio.sleep(RESTART_DELAY)

    def notify(self, message_id: str) -> None:
        """Tell the queue runner that message_id was just spooled."""
        process = self._process
        # A runner that is gone or restarting finds the message on its first scan of the queue.
        if process is not None and process.returncode is None:
            stdin, _ = pipes(process)
            if not stdin.is_closing():
                stdin.write(f"{message_id}\n".encode())

    async def stop(self) -> None:
        """Ask the queue runner to finish the deliveries in flight (up to shutdown_grace), then wait for it."""
        self._stopping = True
        process = self._process
        if process is not None and process.returncode is None:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), self.settings.shutdown_grace + 5)
            except TimeoutError:
                process.kill()
        if self._supervisor is not None:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._supervisor


class ForwardedMetrics:
    """The child's side of the metrics: each increment goes to relayd as a JSON line.

    Counting must never fail a delivery: once relayd is gone (the pipe is broken), increments are
    dropped and on_lost is called, so the runner finishes its deliveries in flight and exits.
    """

    def __init__(self, stream: TextIO, on_lost: Callable[[], None] = lambda: None) -> None:
        self.stream = stream
        self.on_lost = on_lost
        self.lost = False

    def inc(self, name: str, /, **labels: str) -> None:
        """Add one to the counter name with these labels, in relayd's metrics."""
        if self.lost:
            return
        try:
            self.stream.write(json.dumps({"name": name, "labels": labels}) + "\n")
            self.stream.flush()
        except (OSError, ValueError):
            self.lost = True
            # Python flushes stdout again at exit; pointing it at /dev/null keeps that quiet too.
            with contextlib.suppress(OSError, ValueError):
                os.dup2(os.open(os.devnull, os.O_WRONLY), self.stream.fileno())
            log.warning(kv(event="intake_gone", action="finishing the deliveries in flight, then exiting"))
            self.on_lost()


def delivery_config(settings: Settings, policy_source: PolicySource) -> DeliveryConfig:
    """Return the queue runner's settings."""
    return DeliveryConfig(
        smarthost=settings.smarthost,
        route_of=policy_source.route_of,
        helo_name=settings.hostname,
        retry_initial=settings.retry_initial,
        retry_factor=settings.retry_factor,
        retry_max=settings.retry_max,
        queue_lifetime=settings.queue_lifetime,
        concurrency=settings.delivery_concurrency,
        timeout=settings.delivery_timeout,
        shutdown_grace=settings.shutdown_grace,
    )


async def _read_intake(queue_runner: QueueRunner, stop: asyncio.Event) -> None:
    """Hand each message id relayd sends to the queue runner; at EOF set stop.

    EOF means relayd has exited, even by SIGKILL, and must not leave a runner behind.
    """
    reader = asyncio.StreamReader()
    await asyncio.get_running_loop().connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := await reader.readline():
        queue_runner.add(line.decode().strip())
    stop.set()


async def _run(settings: Settings) -> None:
    # Clients wait on intake; delivery is background work that retries anyway. Under CPU pressure
    # the runner yields, and catches up once the burst is over.
    os.nice(settings.delivery_nice)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    # Ctrl-C reaches the whole process group; relayd decides when the runner stops, with SIGTERM.
    loop.add_signal_handler(signal.SIGINT, lambda: None)
    policy_source = PolicySource(settings.policy, Metrics(), settings.poll_interval)
    await asyncio.to_thread(policy_source.load)
    watch = asyncio.create_task(policy_source.watch())
    spool = Spool(settings.spool, settings.fsync_threads)
    metrics = ForwardedMetrics(sys.stdout, stop.set)
    queue_runner = QueueRunner(spool, delivery_config(settings, policy_source), metrics)
    intake = asyncio.create_task(_read_intake(queue_runner, stop))
    try:
        await queue_runner.run(stop)
    finally:
        watch.cancel()
        intake.cancel()
        spool.close()


if __name__ == "__main__":
    settings = settings_from_json(sys.argv[1])
    logs.configure(settings.log_level)
    uvloop.run(_run(settings))
