"""Run the open-relay self-test from the dashboard, the API and the CLI, with guards against abuse.

An open-relay scanner is a tool spammers would love to borrow, so by default it only tests
loopback targets (the bundled relayd) or the targets listed in settings.SELFTEST_ALLOWED_TARGETS,
and each user may start only a few runs.
"""

import smtplib
import socket
from datetime import timedelta

import netaddr
from django.conf import settings
from django.core.exceptions import ValidationError
from django.utils import timezone

from policy.audit import current_context
from policy.domains import normalise_domain
from policy.models import LocalDomain, PolicyRevision, SelfTestRun
from relayd import selftest

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


def run_selftest(target: str, user=None, domain: str = "") -> SelfTestRun:
    """Run the battery against target (host:port), store the result and return it.

    Raise SelfTestRefused for a target that is not allowed or a user over the rate limit.
    A server that cannot be reached is a stored result with an error, not an exception.
    """
    try:
        host, port = selftest.split_target(target.strip())
    except ValueError as exc:
        raise SelfTestRefused(f"{exc}: enter the target as host:port, e.g. 127.0.0.1:2525.") from None
    _check_target(host, port)
    domain = _checked_domain(domain)
    if user is not None:
        _check_rate(user)
    domain = domain or LocalDomain.objects.values_list("domain", flat=True).first() or ""
    context = current_context()
    run = SelfTestRun(
        target=f"{host}:{port}",
        domain=domain,
        run_by=user,
        run_by_name=context.actor_name,
        revision_serial=latest_serial(),
    )
    try:
        report = selftest.run(host, port, domain or None, timeout=10)
    except (TimeoutError, OSError, smtplib.SMTPException) as exc:
        run.error = (str(exc) or type(exc).__name__)[:500]
    else:
        run.domain, run.accepted, run.total, run.report = (
            report.domain,
            report.accepted,
            len(report.attempts),
            report.as_dict(),
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


def _check_target(host: str, port: int) -> None:
    if f"{host}:{port}" in settings.SELFTEST_ALLOWED_TARGETS:
        return
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise SelfTestRefused(f"Cannot resolve {host}: {exc.strerror}.") from None
    if not all(netaddr.IPAddress(info[4][0].split("%")[0]).is_loopback() for info in infos):
        raise SelfTestRefused(
            f"{host}:{port} is not a loopback address. Only loopback targets and the targets in "
            "SELFTEST_ALLOWED_TARGETS may be tested, so that this scanner cannot be turned against others."
        )


def _check_rate(user) -> None:
    now = timezone.now()
    recent = SelfTestRun.objects.filter(run_by=user, started_at__gte=now - timedelta(hours=1))
    if recent.filter(started_at__gte=now - MIN_INTERVAL).exists():
        raise SelfTestRateLimited(f"Please wait {MIN_INTERVAL.seconds} seconds between self-tests.")
    if recent.count() >= MAX_PER_HOUR:
        raise SelfTestRateLimited(f"At most {MAX_PER_HOUR} self-tests an hour; try again later.")
