"""The queue runner in its own process: spooled mail reaches the route's sink, and its counters reach /metrics."""

import os
import socket
import time

from aiosmtpd.controller import Controller

from tests.relayd.conftest import policy, scrape, send


class Sink:
    """A next hop that keeps what it receives."""

    def __init__(self) -> None:
        self.messages: list = []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append(envelope)
        return "250 2.0.0 Ok"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_accepted_mail_is_delivered_through_the_route_and_counted(start_relay):
    sink = Sink()
    controller = Controller(sink, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        route = f"127.0.0.1:{controller.port}"
        domains = [{"domain": "example.com", "include_subdomains": True, "route": route}]
        relay = start_relay(policy(local_domains=domains), delivery=True)
        with relay.smtp() as client:
            assert send(client, "a@client.test", "<bob@example.com>")[1][0] == 250
        deadline = time.monotonic() + 10
        while not sink.messages or relay.queued():
            assert time.monotonic() < deadline, "not delivered"
            time.sleep(0.05)
        runner = relay.daemon.runner._process.pid
        assert os.getpriority(os.PRIO_PROCESS, runner) - os.getpriority(os.PRIO_PROCESS, 0) == 10  # intake first
        [delivered] = sink.messages
        assert delivered.rcpt_tos == ["bob@example.com"] and delivered.mail_from == "a@client.test"
        assert delivered.content.startswith(b"Received: from client.test ([127.0.0.1])")
        while scrape(relay.http_port).get('relayd_deliveries_total{result="sent"}') != 1:
            assert time.monotonic() < deadline, "delivery not counted"
            time.sleep(0.05)
    finally:
        controller.stop()


def test_runner_stops_when_relayd_is_killed(start_relay):
    relay = start_relay(policy(), delivery=True)
    deadline = time.monotonic() + 10
    while relay.daemon.runner._process is None:  # spawned in the background; slow on a busy machine
        assert time.monotonic() < deadline, "the runner never started"
        time.sleep(0.05)
    runner = relay.daemon.runner._process
    relay.daemon.runner._stopping = True  # as if relayd died: nobody restarts the runner
    runner.stdin.close()  # what the kernel does to the pipe when relayd is SIGKILLed
    deadline = time.monotonic() + 10
    while runner.returncode is None:
        assert time.monotonic() < deadline, "the runner outlived relayd"
        time.sleep(0.05)
