"""Talk to the dashboard: poll its relayd export for new snapshots (--policy-url) and report status (--report-url).

Both are asyncio tasks in intake's process that make each request with urllib in a thread: one
request a second needs no HTTP library, and a slow dashboard never blocks the event loop.

Fetching sends If-None-Match with the ETag of the last snapshot seen, so an unchanged policy costs a
304 without a body. With --fetch-wait N (default 30) it also asks ?wait=N: a dashboard served by its
ASGI server holds the 304 until a revision commits (then answers at once) or N seconds pass, so a
change reaches the node in one round trip instead of at the next poll. Requests start at most once
per --fetch-interval (except the one right after a new snapshot), so a dashboard that answers at
once (plain WSGI, an older release) is simply polled; after a failed request the next one is a
plain poll, so a proxy that cuts long requests costs one failure per recovery, not every request.

A 200 is validated with relayd.config before anything is written. A valid
snapshot with a newer serial replaces --policy atomically (temporary file, fsync, rename, fsync of
the directory), and the policy watcher loads it at once. --policy is therefore the last good
snapshot on disk: relayd starts from it, and enforces it, while the dashboard is down. An invalid
snapshot, one older than the policy in force, or one of the serial in force with other content, is
refused and logged once, and the policy in force stays.

Reporting POSTs the node's name, the serial in force, whether STARTTLS is configured, the counters
the dashboard charts and the serial and reason of the last snapshot refused since the policy in force
came into force, every report_interval and as soon as a new policy is in force or one is refused.

Failures are logged when they start, when the error changes and when they end, not at every
attempt; fetching backs off while it fails. The token travels only in the Authorization header: it
is never logged, and requests do not follow redirects, which would hand it to whatever server a
redirect names.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import http.client
import json
import logging
import random
import ssl
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime
from email.message import Message
from pathlib import Path
from typing import IO, Any, TypeVar, cast

from relayd import __version__
from relayd.config import SUPPORTED_SCHEMAS, SnapshotError, parse_snapshot
from relayd.files import write_atomically
from relayd.logs import kv
from relayd.metrics import Metrics
from relayd.policy_source import PolicySource, succeeds

log = logging.getLogger("relayd.dashboard")
T = TypeVar("T")

# Long enough for a 100,000-network snapshot from a busy dashboard, short enough that a hung one
# is noticed and retried.
REQUEST_TIMEOUT = 10.0
# A snapshot of 100,000 networks is about 20 MB; anything far larger is not a snapshot.
MAX_SNAPSHOT_BYTES = 256 * 1024 * 1024
# While the dashboard fails, polls slow down to this, so a fleet does not hammer it as it recovers.
MAX_BACKOFF = 30.0
# The decision rules that refuse relaying (relayd/decision.py); the dashboard charts them as relay_denied.
RELAY_RULES = frozenset(("default_deny", "denied_network", "sender_routing"))


class DashboardError(Exception):
    """A request to the dashboard failed; the message says why and is safe to log (it never holds the token)."""


def read_token(path: Path) -> str:
    """Return the API token in the file at path; raise DashboardError if it is missing or malformed."""
    try:
        token = path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise DashboardError(f"cannot read the token file {path}: {exc}") from None
    # A header value with a space, newline or non-ASCII byte would be refused or mangled on the wire.
    if not token or not all("!" <= character <= "~" for character in token):
        raise DashboardError(f"{path} must hold one API token: printable ASCII without spaces")
    return token


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(
        self,
        req: urllib.request.Request,
        fp: IO[bytes],
        code: int,
        msg: str,
        headers: Message,
        newurl: str,
    ) -> None:
        # None makes urllib raise HTTPError for the 3xx; following it would resend the token.
        return None


class Client:
    """Make requests to the dashboard with the API token, verifying HTTPS against ca_file or the system's CAs."""

    def __init__(self, token: str, ca_file: Path | None = None) -> None:
        context = ssl.create_default_context(cafile=ca_file)
        self._opener = urllib.request.build_opener(_NoRedirects(), urllib.request.HTTPSHandler(context=context))
        self._token = token

    def request(
        self, url: str, data: bytes | None = None, headers: dict[str, str] | None = None, wait: int = 0
    ) -> tuple[int, Message, bytes]:
        """Send a GET (or a POST of data) and return the status, headers and body; raise DashboardError if it fails.

        A 304 is returned like a success; any other status outside 2xx is an error. A wait asks for a
        long poll (?wait=N), which the server may hold that long on top of the usual timeout; errors
        name url without it, so that a failure logged once is not logged again for a plain retry.
        """
        # The URL's scheme is http or https: Settings refuses any other.
        sent_to = with_query(url, wait=wait) if wait else url
        request = urllib.request.Request(sent_to, data=data, headers=headers or {})  # noqa: S310
        request.add_header("Authorization", f"Token {self._token}")
        request.add_header("User-Agent", "relayd")
        try:
            with self._opener.open(request, timeout=REQUEST_TIMEOUT + wait) as response:
                return response.status, response.headers, response.read(MAX_SNAPSHOT_BYTES + 1)
        except urllib.error.HTTPError as exc:
            with exc:
                if exc.code == 304:
                    return 304, exc.headers, b""
                raise DashboardError(_http_problem(url, exc)) from None
        except urllib.error.URLError as exc:
            raise DashboardError(f"cannot reach {url}: {exc.reason}") from None
        except (OSError, http.client.HTTPException) as exc:
            raise DashboardError(f"request to {url} failed: {exc or type(exc).__name__}") from None


def _http_problem(url: str, error: urllib.error.HTTPError) -> str:
    problem = f"{url} answered {error.code} {error.reason}"
    if 300 <= error.code < 400:
        return f"{problem}, redirecting to {error.headers.get('Location')}: give that URL instead"
    if error.code in (401, 403):
        return (
            f"{problem}: check the token in --token-file: it must be a node token for this --node-name "
            "(manage.py create_api_token USER --node NAME) whose user is an editor"
        )
    return problem


class _Health:
    """Log the failures of one kind of request when they start, change and end, rather than at every attempt."""

    def __init__(self, event: str, url: str) -> None:
        self.event = event
        self.url = url
        self.error: str | None = None
        self.failures = 0
        self.failing_since = 0.0
        self.last_success_at: datetime | None = None

    def failed(self, error: str, action: str) -> None:
        if self.error is None:
            self.failing_since = time.monotonic()
        if error != self.error:
            log.warning(kv(event=f"{self.event}_failing", url=self.url, error=error, action=action))
        self.error = error
        self.failures += 1

    def worked(self) -> None:
        if self.error is not None:
            failed_for = round(time.monotonic() - self.failing_since, 1)
            log.info(kv(event=f"{self.event}_recovered", url=self.url, failures=self.failures, seconds=failed_for))
        self.error = None
        self.failures = 0
        self.last_success_at = datetime.now(UTC)

    def status(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "last_success_at": self.last_success_at.isoformat() if self.last_success_at else None,
            "error": self.error,
        }


class PolicyFetcher:
    """Poll the dashboard's relayd export and install each new valid snapshot as the policy file."""

    def __init__(
        self,
        url: str,
        client: Client,
        policy_source: PolicySource,
        metrics: Metrics,
        interval: float,
        wait: int = 0,
        reload: Callable[[], None] | None = None,
    ) -> None:
        self.url = url
        self.client = client
        self.policy_source = policy_source
        self.metrics = metrics
        self.interval = interval
        self.wait = wait
        # Called when a new snapshot is written: by default this process reloads it; the daemon
        # also tells its intake workers, rather than leave them to notice the file at their next check.
        self.reload = reload or policy_source.request_reload
        # True after a failure: the next request is a plain poll, until one succeeds.
        self.plain = False
        self.etag: str | None = None
        self.health = _Health("policy_fetch", url)
        # The digest of the last snapshot refused, so a server that sends no ETag does not get the
        # same bad snapshot refused and logged at every poll.
        self._refused: str | None = None

    async def run(self) -> None:
        """Fetch until cancelled (at most once per interval), backing off while the dashboard fails."""
        self.etag = await asyncio.to_thread(_etag_of, self.policy_source.path)
        delay = self.interval
        while True:
            refused = self.policy_source.refused
            started = time.monotonic()
            try:
                installed = await in_daemon_thread(self.fetch)
            except Exception as exc:
                self.plain = True
                # Anything but a DashboardError is a bug, which must not end policy updates for good either.
                error = str(exc) if isinstance(exc, DashboardError) else f"{type(exc).__name__}: {exc}"
                self.metrics.inc("policy_fetches", result="failed")
                delay = min(delay * 2, max(MAX_BACKOFF, self.interval))
                self.health.failed(error, "enforcing the last good policy; retrying with backoff")
                # Jitter, so nodes that lost the dashboard together do not all return at the same instant.
                await asyncio.sleep(delay * random.uniform(0.8, 1.0))  # noqa: S311 (timing, not secrets)
                continue
            self.health.worked()
            self.plain = False
            delay = self.interval
            if installed:
                self.reload()
                # With the new ETag, wait for the next change at once: a dashboard that does not
                # hold requests answers a 304, and the interval applies from then on.
                continue
            if self.policy_source.refused is not refused:
                self.policy_source.changed.set()  # report the refusal now, not at the next interval
            # A long poll the dashboard held has used up the interval: the next one starts at once.
            await asyncio.sleep(max(0.0, delay - (time.monotonic() - started)))

    def fetch(self) -> bool:
        """Make one request; return whether a new snapshot was written. Raise DashboardError if the request failed."""
        headers = {"Accept": "application/json"}
        wait = 0
        if self.etag:
            headers["If-None-Match"] = self.etag
            if not self.plain:
                wait = self.wait
        status, response_headers, body = self.client.request(self.url, headers=headers, wait=wait)
        if status == 304:
            self.metrics.inc("policy_fetches", result="unchanged")
            return False
        if len(body) > MAX_SNAPSHOT_BYTES:
            raise DashboardError(f"{self.url} sent more than {MAX_SNAPSHOT_BYTES} bytes: not a snapshot")
        digest = hashlib.sha256(body).hexdigest()
        # Remembered even for a snapshot that is refused below: the next polls get a 304 instead of
        # downloading and refusing it again, until the dashboard publishes another revision.
        self.etag = response_headers.get("ETag") or f'"{digest}"'
        in_force = self.policy_source.policy
        try:
            snapshot = parse_snapshot(body)
            if not succeeds(snapshot, in_force.snapshot if in_force else None):
                self.metrics.inc("policy_fetches", result="unchanged")
                return False
        except SnapshotError as exc:
            return self._refuse(digest, str(exc), exc.serial)
        try:
            self.policy_source.path.parent.mkdir(parents=True, exist_ok=True)
            # 0600: the snapshot holds the SMTP users' password hashes.
            write_atomically(self.policy_source.path, body, mode=0o600)
        except OSError as exc:
            raise DashboardError(f"cannot write {self.policy_source.path}: {exc}") from None
        self.metrics.inc("policy_fetches", result="updated")
        log.info(kv(event="policy_fetched", url=self.url, serial=snapshot.serial, path=self.policy_source.path))
        return True

    def _refuse(self, digest: str, problem: str, serial: int | None) -> bool:
        self.metrics.inc("policy_fetches", result="refused")
        if digest != self._refused:
            self._refused = digest
            self.policy_source.refuse(problem, source=self.url, serial=serial)
        return False


async def in_daemon_thread(function: Callable[[], T]) -> T:
    """Return function() run in a daemon thread of its own.

    Not asyncio.to_thread: a long poll blocks its thread for up to --fetch-wait seconds, and the
    default executor's threads are joined when the event loop ends, which would hold up a stop.
    Cancelling the await leaves the thread to finish (or die with the process) on its own.
    """
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def settle(result: T | None, error: BaseException | None) -> None:
        if not future.done():
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(cast(T, result))  # function() returned it: no error

    def run() -> None:
        result, error = None, None
        try:
            result = function()
        except BaseException as exc:  # handed to the awaiting task, which decides
            error = exc
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: nobody waits
            loop.call_soon_threadsafe(settle, result, error)

    threading.Thread(target=run, name="relayd-policy-fetch", daemon=True).start()
    return await future


def with_query(url: str, **parameters: object) -> str:
    """Return url with parameters added to (or replacing those in) its query."""
    parts = urllib.parse.urlsplit(url)
    query = [(name, value) for name, value in urllib.parse.parse_qsl(parts.query) if name not in parameters]
    query += [(name, str(value)) for name, value in parameters.items()]
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query)))


def _etag_of(path: Path) -> str | None:
    """Return the ETag of the cached snapshot, or None if there is none.

    The dashboard's ETag is the sha256 of the snapshot text, which the cache holds byte for byte, so
    a restarted relayd gets a 304 rather than the snapshot it already has.
    """
    try:
        return f'"{hashlib.sha256(path.read_bytes()).hexdigest()}"'
    except OSError:
        return None


def node_report(
    node: str,
    serial: int | None,
    tls: bool,
    metrics: Metrics,
    refused: dict[str, Any] | None = None,
    proxy_hosts: list[str] | None = None,
    top_peer: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Return the status report the dashboard's daemons API takes; refused is PolicySource.refused.

    proxy_hosts and top_peer (PeerTally.top()) let the risk analysis warn of a trusted proxy or NAT.
    """
    relay_denied = sum(
        value
        for labels, value in metrics.series("rcpt")
        if labels.get("verdict") == "refuse" and labels.get("rule") in RELAY_RULES
    )
    counters = {
        "connections": metrics.value("connections"),
        "accepted": metrics.value("messages_accepted"),
        "relay_denied": relay_denied,
        "queue_size": metrics.value("queue_size"),
        "deliveries": metrics.value("deliveries", result="sent"),
    }
    usage: dict[str, dict[str, int]] = {"trusted_networks": {}, "smtp_users": {}}
    for labels, value in metrics.series("relayed_messages"):
        usage["trusted_networks" if labels.get("kind") == "trusted_network" else "smtp_users"][labels["holder"]] = int(
            value
        )
    return {
        "node": node,
        "version": __version__,
        "schemas": list(SUPPORTED_SCHEMAS),
        "serial": serial,
        "tls": tls,
        "counters": {key: int(value) for key, value in counters.items()},
        # Messages relayed since this node started, per trusted network and SMTP user (issue 15).
        "usage": usage,
        "refused_serial": refused["serial"] if refused else None,
        "refused_reason": refused["reason"] if refused else None,
        "proxy_hosts": proxy_hosts or [],
        "top_peer": top_peer,
    }


class Reporter:
    """POST this node's status to the dashboard every interval, and at once when a new policy is in force."""

    def __init__(
        self,
        url: str,
        client: Client,
        policy_source: PolicySource,
        metrics: Metrics,
        interval: float,
        report: Callable[[], dict[str, Any]],
    ) -> None:
        self.url = url
        self.client = client
        self.policy_source = policy_source
        self.metrics = metrics
        self.interval = interval
        self.report = report
        self.health = _Health("status_report", url)

    async def run(self) -> None:
        """Report until cancelled."""
        while True:
            try:
                # In a thread with the request: the queue size is a directory listing.
                await asyncio.to_thread(self.send)
            except DashboardError as exc:
                self.metrics.inc("status_reports", result="failed")
                self.health.failed(str(exc), f"retrying in {self.interval:g} s")
            else:
                self.metrics.inc("status_reports", result="sent")
                self.health.worked()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.policy_source.changed.wait(), self.interval)
            self.policy_source.changed.clear()

    def send(self) -> None:
        """POST one report; raise DashboardError if the dashboard did not take it."""
        body = json.dumps(self.report()).encode()
        self.client.request(self.url, data=body, headers={"Content-Type": "application/json"})
