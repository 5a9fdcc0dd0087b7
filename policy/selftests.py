"""Run the open-relay self-test from the dashboard, the API and the CLI, with guards against abuse.

An open-relay scanner is a tool spammers would love to borrow, and a self-test that connects
anywhere is a port scanner (issue 11, finding 9). So the dashboard and the API only test the
bundled relayd (settings.RELAYD_SMTP_TARGET) and the targets listed in
settings.SELFTEST_ALLOWED_TARGETS; any other target is refused before any lookup or connection,
with the same answer whether a port is open or closed. Each user may start only a few runs.
`manage.py relaytest` is for the host's administrators, who could run `python -m relayd.selftest`
anyway, and tests any target.
"""

import smtplib
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.utils import timezone

from policy.audit import current_context
from policy.domains import normalise_domain
from policy.models import LocalDomain, PolicyRevision, SelfTestRun
from policy.tester import current_snapshot
from relayd import selftest
from relayd.config import compile_policy, validate_snapshot
from relayd.hostport import join_host_port, split_host_port
from relayd.matcher import address_text, parse_address

# Addresses for documentation (RFC 5737, RFC 3849): no real client has them, so the self-test may
# claim one as "an Internet client" without speaking for anyone.
PROBE_ADDRESSES = tuple(
    [f"{net}.{host}" for net in ("192.0.2", "198.51.100", "203.0.113") for host in (1, 77, 254)]
    + ["2001:db8::1", "2001:db8:ffff::77"]
)
MIN_INTERVAL = timedelta(seconds=10)
MAX_PER_HOUR = 20


class SelfTestRefused(Exception):
    """The run was not started; the message says why."""


class SelfTestRateLimited(SelfTestRefused):
    """The user started too many runs; try again later."""


def default_target() -> str:
    return settings.RELAYD_SMTP_TARGET


def latest_serial() -> int | None:
    """Return the serial of the latest policy revision, or None before the first one."""
    return PolicyRevision.objects.order_by("-serial").values_list("serial", flat=True).first()


def run_selftest(target: str, user=None, domain: str = "", *, any_target: bool = False) -> SelfTestRun:
    """Run the battery against target (host:port), store the result and return it.

    Raise SelfTestRefused for a target that is not allowed (any_target: the CLI's administrators
    may test anything) or a user over the rate limit. A server that cannot be reached is a stored
    result with an error, not an exception.
    """
    host, port = parse_target(target)
    if not any_target:
        _check_target(host, port)
    domain = _checked_domain(domain)
    if user is not None:
        _check_rate(user)
    domain = domain or LocalDomain.objects.values_list("domain", flat=True).first() or ""
    policy = compile_policy(validate_snapshot(current_snapshot()))
    as_client = untrusted_address(policy)
    context = current_context()
    run = SelfTestRun(
        target=join_host_port(host, port),
        domain=domain,
        run_by=user,
        run_by_name=context.actor_name,
        revision_serial=latest_serial(),
    )
    try:
        report = selftest.run(host, port, domain or None, timeout=10, as_client=as_client, secret=_xclient_secret())
    except (TimeoutError, OSError, smtplib.SMTPException) as exc:
        run.error = (str(exc) or type(exc).__name__)[:500]
    else:
        trusted = not report.xclient and _is_trusted(policy, report.client)
        run.domain, run.accepted, run.total, run.report = (
            report.domain,
            report.accepted,
            len(report.attempts),
            {**report.as_dict(), "client_trusted": trusted},
        )
    run.save()
    return run


def _checked_domain(domain: str) -> str:
    """Return the domain to test with, normalised; a CR or LF in it would inject SMTP commands."""
    if not domain:
        return ""
    try:
        return normalise_domain(domain)
    except ValidationError as exc:
        raise SelfTestRefused(f"Domain: {exc.messages[0]}") from None


def untrusted_address(policy) -> str | None:
    """Return a documentation address that no trusted network covers and no denied network holds.

    The self-test claims it with XCLIENT to be judged as an Internet client. When every candidate
    is trusted (a policy that trusts the whole Internet), one of them is still returned: such a
    client may relay, and the test should say so. None only when every candidate is denied.
    """
    now = datetime.now(UTC)
    allowed = [text for text in PROBE_ADDRESSES if policy.denied.lookup(parse_address(text), now) is None]
    untrusted = [text for text in allowed if policy.trusted.lookup(parse_address(text), now) is None]
    candidates = untrusted or allowed
    return candidates[0] if candidates else None


def _is_trusted(policy, address: str) -> bool:
    """Return whether the policy lets address relay as a trusted network (the self-test's own, without XCLIENT)."""
    try:
        parsed = parse_address(address)
    except ValueError:
        return False
    now = datetime.now(UTC)
    listed = policy.snapshot.restrictions.allow_listed_ips and policy.trusted.lookup(parsed, now) is not None
    return listed and policy.denied.lookup(parsed, now) is None


def _xclient_secret() -> str | None:
    """Return the bundled relayd's XCLIENT secret, or None when there is none (a target without XCLIENT)."""
    try:
        return settings.RELAYD_XCLIENT_SECRET_FILE.read_text().strip() or None
    except OSError:
        return None


def parse_target(text: str) -> tuple[str, int]:
    """Return (host, port) of "host:port" or "[v6]:port", an IP address in its canonical text; raise SelfTestRefused."""
    try:
        host, port, _ = split_host_port(text.strip(), what="target")
    except ValueError as exc:
        raise SelfTestRefused(f"{exc}: enter the target as host:port, e.g. 127.0.0.1:2525.") from None
    try:
        address = parse_address(host)
    except ValueError:
        return host.lower().rstrip("."), port
    return address_text(*address), port


def allowed_targets() -> set[tuple[str, int]]:
    """Return the targets the self-test may test: the bundled relayd and SELFTEST_ALLOWED_TARGETS."""
    allowed = set()
    for text in (settings.RELAYD_SMTP_TARGET, *settings.SELFTEST_ALLOWED_TARGETS):
        try:
            allowed.add(parse_target(text))
        except SelfTestRefused:
            continue  # a malformed setting allows nothing
    return allowed


def _check_target(host: str, port: int) -> None:
    # Compared as text, before any DNS lookup or connection: a refusal says nothing about the port.
    if (host, port) not in allowed_targets():
        raise SelfTestRefused(
            f"{join_host_port(host, port)} is not a self-test target. Only the bundled relayd (RELAYD_SMTP_TARGET) "
            "and the targets in SELFTEST_ALLOWED_TARGETS may be tested, so that the self-test cannot scan "
            "other hosts or ports."
        )


def _check_rate(user) -> None:
    now = timezone.now()
    recent = SelfTestRun.objects.filter(run_by=user, started_at__gte=now - timedelta(hours=1))
    if recent.filter(started_at__gte=now - MIN_INTERVAL).exists():
        raise SelfTestRateLimited(f"Please wait {MIN_INTERVAL.seconds} seconds between self-tests.")
    if recent.count() >= MAX_PER_HOUR:
        raise SelfTestRateLimited(f"At most {MAX_PER_HOUR} self-tests an hour; try again later.")
