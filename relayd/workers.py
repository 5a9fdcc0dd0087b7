"""Run SMTP intake in several processes on the same listeners (--workers), and supervise them.

One Python process runs one event loop on one core, while Postfix runs an smtpd per client. With
--workers N, relayd itself is worker one, and N - 1 more processes (python -m relayd.workers
SETTINGS_JSON LINK_FD LISTENER_FD...) accept on the very sockets relayd bound, inherited: the
kernel hands each new connection to whichever process accepts first, so an idle worker takes the
next client. Each worker reads the policy file itself and decides on its own; what must stay one
(the client limits, the spool writer and queue runner, the counters) stays in relayd, which the
workers reach through relayd.hub. A worker that dies is started again; a worker whose relayd is
gone, even killed with SIGKILL, stops at once, so that a new relayd can bind the port.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import signal
import socket
import sys
from collections.abc import Awaitable, Callable

import uvloop

from relayd import logs
from relayd.children import spawn
from relayd.hub import ParentLink
from relayd.logs import kv
from relayd.metrics import Metrics
from relayd.policy_source import PolicySource
from relayd.server import Relay
from relayd.settings import Settings, settings_from_json, settings_to_json

log = logging.getLogger("relayd.workers")

RESTART_DELAY = 1.0
_PR_SET_PDEATHSIG = 1


class Workers:
    """relayd's side: start workers - 1 intake processes on the listeners and keep them running until stop()."""

    def __init__(
        self,
        settings: Settings,
        listeners: list[socket.socket],
        serve: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]],
    ) -> None:
        self.settings = settings
        self.listeners = listeners
        self.serve = serve  # serves one worker's link: relayd.hub.serve_worker with the parent's parts
        self._processes: dict[int, asyncio.subprocess.Process] = {}
        self._supervisors: list[asyncio.Task[None]] = []
        self._stopping = False

    def start(self) -> None:
        """Start the workers."""
        for number in range(1, self.settings.workers):
            self._supervisors.append(asyncio.create_task(self._supervise(number)))

    @property
    def pids(self) -> list[int]:
        """Return the process ids of the running workers."""
        return [process.pid for process in self._processes.values() if process.returncode is None]

    async def _supervise(self, number: int) -> None:
        while not self._stopping:
            ours, theirs = socket.socketpair()
            try:
                fds = [theirs.fileno(), *(sock.fileno() for sock in self.listeners)]
                arguments = (settings_to_json(self.settings), str(os.getpid()), *map(str, fds))
                process = await spawn("relayd.workers", *arguments, pass_fds=fds)
            finally:
                theirs.close()
            self._processes[number] = process
            reader, writer = await asyncio.open_connection(sock=ours)
            await self.serve(reader, writer)
            status = await process.wait()
            if not self._stopping:
                action = f"restarting in {RESTART_DELAY:g} s"
                log.error(kv(event="worker_exited", worker=number, status=status, action=action))
                await asyncio.sleep(RESTART_DELAY)

    def signal(self, signum: int) -> None:
        """Send signum to every running worker (SIGHUP: reload the policy)."""
        for process in self._processes.values():
            if process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    process.send_signal(signum)

    async def stop(self) -> None:
        """Ask every worker to finish its sessions (up to shutdown_grace) and wait for them to exit."""
        self._stopping = True
        self.signal(signal.SIGTERM)
        for process in list(self._processes.values()):
            try:
                await asyncio.wait_for(process.wait(), self.settings.shutdown_grace + 5)
            except TimeoutError:
                process.kill()
                await process.wait()
        for supervisor in self._supervisors:
            supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await supervisor


def _die_with_parent() -> None:
    """Have the kernel kill this process when relayd dies, however it dies (Linux; elsewhere the link's EOF)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


async def _serve(settings: Settings, link_fd: int, listener_fds: list[int]) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    reader, writer = await asyncio.open_connection(sock=socket.socket(fileno=link_fd))
    link = ParentLink(reader, writer, on_lost=stop.set)
    # The policy's own counters are relayd's; a worker's would count each reload once per worker.
    policy_source = PolicySource(settings.policy, Metrics(), settings.poll_interval)
    await asyncio.to_thread(policy_source.load)
    watcher = asyncio.create_task(policy_source.watch())
    relay = Relay(settings, policy_source, link, link, limits=link)
    listeners = [socket.socket(fileno=fd) for fd in listener_fds]
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    loop.add_signal_handler(signal.SIGHUP, policy_source.request_reload)
    await relay.start(listeners)
    await stop.wait()
    # Without the parent nothing can be spooled: close at once, as relayd itself stopped.
    await relay.stop(0 if link.lost else settings.shutdown_grace)
    watcher.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await watcher
    await link.close()


def main(argv: list[str]) -> int:
    """Run one intake worker: argv is the settings as JSON, relayd's pid, the link's descriptor, each listener's."""
    _die_with_parent()
    settings_json, parent, link_fd, *listener_fds = argv
    settings = settings_from_json(settings_json)
    logs.configure(settings.log_level)
    if os.getppid() != int(parent):
        return 1  # relayd died before this worker could ask to die with it
    uvloop.run(_serve(settings, int(link_fd), [int(fd) for fd in listener_fds]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
