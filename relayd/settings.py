"""Every relayd option in one place: its name, default, type and help, for the CLI, config file and environment."""

from __future__ import annotations

import ipaddress
import json
import socket
import urllib.parse
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, cast

from relayd.clientaddr import parse_hosts
from relayd.decision import parse_recipient
from relayd.hostport import split_host_port

# The longest long poll the dashboard grants (policy/revision_feed.py MAX_WAIT).
MAX_FETCH_WAIT = 55


def meta(help: str, kind: type = str, metavar: str | None = None) -> dict[str, Any]:
    """Describe a setting for the CLI: its help text, and the type its text form converts to."""
    return {"help": help, "kind": kind, "metavar": metavar}


def default_hostname() -> str:
    """Return this machine's fully qualified name, or its plain host name when no better one resolves.

    socket.getfqdn() falls back to whatever the address of the host name maps back to, often
    "localhost", which would make relayd greet as, and take postmaster mail for, localhost.
    """
    fqdn = socket.getfqdn()
    if "." in fqdn and not fqdn.lower().startswith("localhost"):
        return fqdn
    return socket.gethostname()


# The default of --policy and --spool, which are required: __post_init__ refuses a Settings without
# them, so code holding a Settings may take both as given. (A field without a default could not
# follow those with one, and the command line's message says more than a TypeError would.)
_REQUIRED = cast(Path, None)


@dataclass(frozen=True)
class Settings:
    """relayd's configuration; durations are in seconds and sizes in bytes."""

    policy: Path = field(
        default=_REQUIRED,
        metadata=meta(
            "policy snapshot file to enforce (required); with --policy-url, the cache of the last good one",
            Path,
            metavar="FILE",
        ),
    )
    policy_url: str | None = field(
        default=None,
        metadata=meta("dashboard export to poll for snapshots, e.g. https://HOST/api/v1/export/relayd/", metavar="URL"),
    )
    token_file: Path | None = field(
        default=None,
        metadata=meta("file holding the dashboard API token, for --policy-url and --report-url", Path, metavar="FILE"),
    )
    ca_file: Path | None = field(
        default=None,
        metadata=meta("CA certificates (PEM) to verify the dashboard's HTTPS with; else the system's", Path, "FILE"),
    )
    fetch_interval: float = field(
        default=1.0, metadata=meta("least seconds between the starts of two requests to --policy-url", float)
    )
    fetch_wait: int = field(
        default=30,
        metadata=meta(
            "seconds the dashboard may hold a request to --policy-url until a new revision commits (long poll); "
            "0: plain polling",
            int,
        ),
    )
    report_url: str | None = field(
        default=None,
        metadata=meta(
            "where to POST this node's status; default: the daemons API beside --policy-url; 'off' to disable",
            metavar="URL",
        ),
    )
    report_interval: float = field(default=10.0, metadata=meta("seconds between status reports", float))
    spool: Path = field(default=_REQUIRED, metadata=meta("spool directory (required)", Path, metavar="DIR"))
    listen: list[str] = field(
        default_factory=lambda: ["127.0.0.1:2525"],
        metadata=meta("SMTP listen address, repeatable; [::]:PORT is dual-stack", list, metavar="ADDR:PORT"),
    )
    proxy_hosts: list[str] = field(
        default_factory=list,
        metadata=meta(
            "networks of proxies (HAProxy PROXY protocol v1/v2) whose connections must start with a PROXY header"
            " naming the real client; repeatable or comma-separated; from any other address a PROXY header is refused",
            list,
            metavar="NETWORK",
        ),
    )
    proxy_timeout: float = field(
        default=10.0, metadata=meta("seconds a --proxy-hosts connection has to send its PROXY header", float)
    )
    xclient_hosts: list[str] = field(
        default_factory=list,
        metadata=meta(
            "networks that may use XCLIENT (with --xclient-secret-file) to test as another client address,"
            " e.g. the dashboard's self-test; repeatable or comma-separated",
            list,
            metavar="NETWORK",
        ),
    )
    xclient_secret_file: Path | None = field(
        default=None,
        metadata=meta(
            "file holding the secret an XCLIENT command must carry (SECRET=); needed by --xclient-hosts",
            Path,
            metavar="FILE",
        ),
    )
    smarthost: str | None = field(
        default=None, metadata=meta("next hop for mail without a route of its own, else MX", metavar="HOST:PORT")
    )
    tls_cert: Path | None = field(
        default=None, metadata=meta("certificate chain (PEM) for STARTTLS; AUTH needs TLS", Path, metavar="FILE")
    )
    tls_key: Path | None = field(default=None, metadata=meta("private key (PEM) for STARTTLS", Path, metavar="FILE"))
    metrics_listen: str = field(
        default="127.0.0.1:9025",
        metadata=meta("HTTP address of /metrics and /status; 'off' to disable", metavar="ADDR:PORT"),
    )
    node_name: str = field(default=socket.gethostname(), metadata=meta("name of this node in the status report"))
    hostname: str = field(
        # A factory: the lookup may wait for DNS, which importing relayd must not.
        default_factory=default_hostname,
        metadata=meta("this host's name (greeting, Received headers); postmaster@ it is accepted", metavar="FQDN"),
    )
    postmaster_address: str | None = field(
        default=None,
        metadata=meta(
            "where mail to <postmaster> and postmaster@HOSTNAME goes; default: postmaster@ the policy's first"
            " local domain (refused with 550 when it has none)",
            metavar="ADDRESS",
        ),
    )
    verify_recipients: bool = field(
        default=False,
        metadata=meta("ask a local domain's route whether a recipient exists before accepting it (call-ahead)", bool),
    )
    verify_positive_ttl: float = field(
        default=86400.0, metadata=meta("seconds a recipient the route accepted is remembered", float)
    )
    verify_negative_ttl: float = field(
        default=3600.0, metadata=meta("seconds a recipient the route refused is remembered", float)
    )
    verify_timeout: float = field(default=10.0, metadata=meta("timeout of each step of a verification probe", float))
    # One by default: on a busy 2-core host bench/smtp_throughput.py measured relay-denied sessions
    # slower with two workers, by wall clock and per CPU second (docs/relayd.md "Processes").
    workers: int = field(default=1, metadata=meta("SMTP intake processes sharing the listeners, limits and spool", int))
    max_message_size: int = field(
        default=10_240_000, metadata=meta("largest message accepted (SIZE), as Postfix's default", int, "BYTES")
    )
    max_recipients: int = field(default=100, metadata=meta("recipients per message; more get 452 4.5.3", int))
    max_connections: int = field(
        default=1000, metadata=meta("concurrent sessions of all clients together; more get 421 4.7.0", int)
    )
    min_free_space: int = field(
        default=100_000_000,
        metadata=meta(
            "free bytes the spool's file system must keep; below it (or below a declared SIZE) MAIL gets 452 4.3.1",
            int,
            "BYTES",
        ),
    )
    max_connections_per_ip: int = field(
        default=50, metadata=meta("concurrent sessions per client address (IPv6: per /64)", int)
    )
    command_timeout: float = field(
        default=300.0, metadata=meta("seconds to wait for the next command or DATA line", float)
    )
    session_timeout: float = field(
        default=1800.0, metadata=meta("longest a session may last, whatever it sends", float)
    )
    junk_command_limit: int = field(
        default=100, metadata=meta("NOOP/RSET/VRFY/EXPN/HELP/EHLO/HELO commands per session", int)
    )
    greet_delay: float = field(
        default=1.0, metadata=meta("seconds to wait before the greeting to catch early talkers; 0: off", float)
    )
    greet_pass_ttl: float = field(
        default=86400.0, metadata=meta("seconds a client that waited for the greeting skips the wait", float)
    )
    auth_slow_after: int = field(default=3, metadata=meta("AUTH failures per client before replies are delayed", int))
    auth_refuse_after: int = field(default=10, metadata=meta("AUTH failures per client before AUTH is refused", int))
    auth_delay: float = field(
        default=1.0, metadata=meta("first tarpit delay; it doubles with each further failure", float)
    )
    auth_window: float = field(
        default=900.0, metadata=meta("seconds after its last failure that a client's failures are forgotten", float)
    )
    shutdown_grace: float = field(
        default=30.0, metadata=meta("seconds SIGTERM waits for sessions and deliveries in flight", float)
    )
    fsync_threads: int = field(default=4, metadata=meta("threads fsyncing spool files concurrently", int))
    poll_interval: float = field(
        default=0.2, metadata=meta("seconds between checks of the policy file for a new version", float)
    )
    delivery: bool = field(default=True, metadata=meta("run the queue runner (in a process of its own)", bool))
    delivery_nice: int = field(
        default=10, metadata=meta("CPU niceness added to the queue runner, so a backlog never slows intake", int)
    )
    retry_initial: float = field(default=300.0, metadata=meta("first retry delay of a deferred delivery", float))
    retry_factor: float = field(default=2.0, metadata=meta("factor by which each further retry delay grows", float))
    retry_max: float = field(default=3600.0, metadata=meta("longest retry delay", float))
    queue_lifetime: float = field(
        default=432000.0, metadata=meta("seconds before undeliverable mail is bounced (5 days)", float)
    )
    delivery_concurrency: int = field(default=20, metadata=meta("messages delivered at once", int))
    delivery_timeout: float = field(
        default=60.0, metadata=meta("timeout of each step of an outbound SMTP session", float)
    )
    user: str | None = field(
        default=None,
        metadata=meta("started as root: the user to switch to once the listeners are bound", metavar="USER"),
    )
    group: str | None = field(
        default=None, metadata=meta("the group to switch to with --user; default: the user's own", metavar="GROUP")
    )
    allow_root: bool = field(
        default=False, metadata=meta("let relayd go on as root after binding (not recommended, as in Postfix)", bool)
    )
    log_level: str = field(default="info", metadata=meta("debug, info, warning or error"))
    redis_url: str | None = field(
        default=None,
        metadata=meta(
            "Redis holding the relay-profile counters shared by every node, e.g. redis://127.0.0.1:6379/0;"
            " without it each node counts alone",
            metavar="URL",
        ),
    )
    redis_prefix: str = field(default="relayd", metadata=meta("prefix of this fleet's counter keys in Redis"))

    def __post_init__(self) -> None:
        if self.policy is None or self.spool is None:
            raise ValueError("--policy and --spool are required")
        for option, url in (("policy-url", self.policy_url), ("report-url", report_url(self))):
            if url is not None and urllib.parse.urlsplit(url).scheme not in ("http", "https"):
                raise ValueError(f"--{option} must be an http:// or https:// URL")
        if (self.policy_url is not None or report_url(self) is not None) and self.token_file is None:
            raise ValueError("--policy-url and --report-url need --token-file: the dashboard wants an API token")
        if self.fetch_interval <= 0 or self.report_interval <= 0:
            raise ValueError("fetch-interval and report-interval must be positive")
        if self.workers < 1:
            raise ValueError("workers must be at least 1")
        if not 0 <= self.fetch_wait <= MAX_FETCH_WAIT:
            raise ValueError(f"fetch-wait must be from 0 to {MAX_FETCH_WAIT} seconds (the dashboard's limit)")
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("--tls-cert and --tls-key go together")
        if not self.listen:
            raise ValueError("give at least one --listen address")
        for address in [*self.listen, *([] if self.metrics_listen == "off" else [self.metrics_listen])]:
            parse_listen(address)
        for item in fields(self):
            value = getattr(self, item.name)
            if item.metadata["kind"] in (int, float) and value < 0:
                raise ValueError(f"{item.name.replace('_', '-')} must not be negative")
        for option in ("proxy_hosts", "xclient_hosts"):
            try:
                parse_hosts(getattr(self, option))
            except ValueError as exc:
                raise ValueError(f"--{option.replace('_', '-')}: {exc}") from None
        if self.xclient_hosts and self.xclient_secret_file is None:
            raise ValueError("--xclient-hosts needs --xclient-secret-file: XCLIENT lets a client borrow any address")
        if self.postmaster_address is not None and not _is_mailbox(self.postmaster_address):
            raise ValueError("postmaster-address must be a plain address, e.g. admin@example.com (no <>, no routing)")
        if self.redis_url is not None and urllib.parse.urlsplit(self.redis_url).scheme not in (
            "redis",
            "rediss",
            "unix",
        ):
            raise ValueError("--redis-url must be a redis://, rediss:// or unix:// URL")
        if self.group is not None and self.user is None:
            raise ValueError("--group goes with --user")
        if self.log_level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
            raise ValueError("log-level must be debug, info, warning or error")


# The node report goes to the dashboard the snapshot comes from, so this suffix of --policy-url
# is swapped for the daemons API, keeping any path prefix the dashboard is served under.
_EXPORT_PATH = "/api/v1/export/relayd/"
_DAEMONS_PATH = "/api/v1/daemons/"


def report_url(settings: Settings) -> str | None:
    """Return the URL status reports go to, or None when reporting is off."""
    if settings.report_url == "off":
        return None
    if settings.report_url is not None or settings.policy_url is None:
        return settings.report_url
    parts = urllib.parse.urlsplit(settings.policy_url)
    prefix = parts.path.removesuffix(_EXPORT_PATH) if parts.path.endswith(_EXPORT_PATH) else ""
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, prefix + _DAEMONS_PATH, "", ""))


def settings_to_json(settings: Settings) -> str:
    """Return settings as JSON, to hand them to a helper process."""
    return json.dumps({item.name: _plain(getattr(settings, item.name)) for item in fields(Settings)})


def settings_from_json(text: str) -> Settings:
    """Return the Settings that settings_to_json() wrote."""
    values = json.loads(text)
    for item in fields(Settings):
        if item.metadata["kind"] is Path and values[item.name] is not None:
            values[item.name] = Path(values[item.name])
    return Settings(**values)


def _plain(value: Any) -> Any:
    return str(value) if isinstance(value, Path) else value


def _is_mailbox(text: str) -> bool:
    try:
        recipient = parse_recipient(text)
    except ValueError:
        return False
    return not text.startswith("<") and recipient.domain is not None and recipient.routing is None


def parse_listen(text: str) -> tuple[str, int]:
    """Return (ip, port) of a listen address written IP:PORT or [IPv6]:PORT; raise ValueError naming the fix."""
    host, port, _ = split_host_port(text, what="listen address", lowest_port=0)
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"{text!r}: listen on an IP address, e.g. 127.0.0.1:2525 or [::]:2525") from None
    return host, port
