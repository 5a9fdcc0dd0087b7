"""Start and stop relayd's parts in order: spool, policy, fetcher, spool writer, SMTP and its workers, HTTP, queue
runner, reporter."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import signal
import time
from datetime import UTC, datetime
from typing import Any

from relayd import __version__
from relayd.config import SUPPORTED_SCHEMAS
from relayd.dashboard import Client, PolicyFetcher, Reporter, node_report, read_token
from relayd.http import start_http
from relayd.hub import serve_worker
from relayd.logs import kv
from relayd.metrics import Metrics
from relayd.policy_source import PolicySource
from relayd.privileges import drop_privileges
from relayd.runner import Runner
from relayd.server import Relay, client_limits, format_address, open_listeners
from relayd.settings import Settings, report_url
from relayd.spool import Spool
from relayd.spool_writer import SpoolWriter
from relayd.workers import Workers

log = logging.getLogger("relayd")


class Daemon:
    """One relayd node: intake in this process and its workers, the spool writer and the queue runner in their own."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.metrics = Metrics()
        self.policy_source = PolicySource(settings.policy, self.metrics, settings.poll_interval)
        self.limits = client_limits(settings)
        # Every worker's sessions: the limits here count them all.
        self.metrics.gauge_from("connections_active", lambda: self.limits.open)
        self.spool: Spool | None = None
        self.writer: SpoolWriter | None = None
        self.relay: Relay | None = None
        self.workers: Workers | None = None
        self.http: asyncio.Server | None = None
        self.runner: Runner | None = None
        self.fetcher: PolicyFetcher | None = None
        self.reporter: Reporter | None = None
        self.started_at = datetime.now(UTC)
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        """Open the spool, load the policy, and start listening and delivering."""
        settings = self.settings
        reports_to = report_url(settings)
        # Settings refuses --policy-url and --report-url without --token-file.
        client = None
        if settings.token_file is not None and (settings.policy_url is not None or reports_to is not None):
            client = Client(read_token(settings.token_file), settings.ca_file)
        self.spool = Spool(settings.spool)
        leftovers = self.spool.remove_leftovers()
        if leftovers:
            log.warning(kv(event="spool_cleanup", removed=leftovers, reason="files left in tmp/ by a crash"))
        self.metrics.gauge_from("queue_size", self.spool.queue_size)
        # Serving starts even without a valid policy: every recipient then gets 451 (fail closed).
        await asyncio.to_thread(self.policy_source.load)
        self._tasks.append(asyncio.create_task(self.policy_source.watch()))
        self.writer = SpoolWriter(str(settings.spool), settings.fsync_threads, self._queued)
        listeners = open_listeners(settings.listen)
        self.relay = Relay(settings, self.policy_source, self.writer, self.metrics, self.limits)
        await self.relay.start(listeners)
        if settings.metrics_listen != "off":
            self.http = await start_http(settings.metrics_listen, self.metrics, self.status)
        # Every socket is bound and the TLS key read: root is no longer needed; no helper or worker has started yet.
        dropped = drop_privileges(settings)
        if dropped is not None:
            log.info(kv(event="privileges_dropped", user=settings.user, uid=dropped[0], gid=dropped[1]))
        if settings.workers > 1:
            serve = functools.partial(serve_worker, limits=self.limits, spool=self.writer, metrics=self.metrics)
            self.workers = Workers(settings, listeners, serve)
            self.workers.start()
        # After the drop, so that the policy files it writes are the user's to read and replace.
        if settings.policy_url is not None and client is not None:
            self.fetcher = PolicyFetcher(
                settings.policy_url,
                client,
                self.policy_source,
                self.metrics,
                settings.fetch_interval,
                settings.fetch_wait,
                reload=self.reload_policy,
            )
            self._tasks.append(asyncio.create_task(self.fetcher.run()))
        if settings.delivery:
            self.runner = Runner(settings, self.metrics)
            self.runner.start()
        if reports_to is not None and client is not None:
            self.reporter = Reporter(
                reports_to, client, self.policy_source, self.metrics, settings.report_interval, self._node_report
            )
            self._tasks.append(asyncio.create_task(self.reporter.run()))
        log.info(
            kv(event="started", node=settings.node_name, pid=os.getpid(), serial=self.metrics.value("policy_serial"))
        )

    async def stop(self) -> None:
        """Stop accepting, finish the sessions and deliveries in flight (bounded), and flush the spool."""
        started = time.monotonic()
        log.info(kv(event="stopping", sessions=self.limits.open))
        # The workers' sessions still need the spool writer, which closes after them.
        await asyncio.gather(
            *([self.relay.stop(self.settings.shutdown_grace)] if self.relay else []),
            *([self.workers.stop()] if self.workers else []),
        )
        if self.http:
            self.http.close()
            await self.http.wait_closed()
        if self.writer:
            await self.writer.close()
        if self.runner:
            await self.runner.stop()
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        log.info(kv(event="stopped", seconds=round(time.monotonic() - started, 3)))

    def _queued(self, message_id: str) -> None:
        if self.runner is not None:
            self.runner.notify(message_id)

    def _node_report(self) -> dict[str, Any]:
        policy = self.policy_source.policy
        tls = self.settings.tls_cert is not None
        serial = policy.serial if policy else None
        relay = self.relay
        return node_report(
            self.settings.node_name,
            serial,
            tls,
            self.metrics,
            self.policy_source.refused,
            proxy_hosts=[str(network) for network in relay.proxy_hosts] if relay else [],
            top_peer=relay.peers.top() if relay else None,
        )

    def reload_policy(self) -> None:
        """Re-read the policy file now, here and in every intake worker (SIGHUP, or a snapshot just fetched)."""
        self.policy_source.request_reload()
        if self.workers is not None:
            self.workers.signal(signal.SIGHUP)

    def status(self) -> dict[str, Any]:
        """Return the status report: node, policy in force, dashboard links, listeners, queue and counters."""
        return {
            "node": self.settings.node_name,
            "version": __version__,
            "schemas": list(SUPPORTED_SCHEMAS),
            "started_at": self.started_at.isoformat(),
            "policy": self.policy_source.status(),
            "policy_fetch": self.fetcher.health.status() if self.fetcher else None,
            "status_report": self.reporter.health.status() if self.reporter else None,
            "listen": [format_address(address) for address in self.relay.addresses] if self.relay else [],
            "sessions": self.limits.open,
            "workers": self.settings.workers,
            "queue_size": self.spool.queue_size() if self.spool else 0,
            "counters": self.metrics.counters(),
        }
