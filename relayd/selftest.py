"""The classic open-relay battery, run against an SMTP server over a real connection.

It sends the 16 MAIL FROM / RCPT TO forms of nmap's smtp-open-relay script (null sender, the
percent hack, quoted local parts, user@domain@host, source routes, bang paths, address literals)
plus a few quoting variants, and records each reply. It never sends DATA: every attempt ends with
RSET, so even an open relay delivers nothing.

Run from a trusted address, the battery only proves that trusted clients may relay. With
--as-client ADDRESS the battery first sends XCLIENT (Postfix's extension; relayd's with
--xclient-hosts) to test as that address, an Internet client's, when the server offers it.

Usage: python -m relayd.selftest HOST:PORT [--domain LOCAL-DOMAIN] [--as-client ADDRESS --secret-file FILE]
(exit 0: not open, 2: open)
"""

import argparse
import smtplib
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from relayd.hostport import split_host_port

# Where the battery pretends to send: a reserved name (RFC 2606) that must never be local.
REMOTE_DOMAIN = "relaytest.example.invalid"
REMOTE_USER = "relaytest"
SENDER = "antispam"


@dataclass(frozen=True)
class Attempt:
    mail_from: str
    rcpt_to: str
    code: int
    reply: str

    @property
    def accepted(self) -> bool:
        return 200 <= self.code < 300


@dataclass(frozen=True)
class Report:
    target: str
    domain: str
    attempts: tuple[Attempt, ...]
    client: str = ""  # the address the server judged: the connection's own, or the one XCLIENT claimed
    xclient: bool = False

    @property
    def accepted(self) -> int:
        return sum(attempt.accepted for attempt in self.attempts)

    @property
    def is_open_relay(self) -> bool:
        return self.accepted > 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "domain": self.domain,
            "accepted": self.accepted,
            "total": len(self.attempts),
            "open_relay": self.is_open_relay,
            "client": self.client,
            "xclient": self.xclient,
            "attempts": [{**asdict(attempt), "accepted": attempt.accepted} for attempt in self.attempts],
        }


def battery(domain: str, ip: str) -> list[tuple[str, str]]:
    """Return the (MAIL FROM, RCPT TO) paths to try; domain is one the target accepts mail for."""
    to = f"{REMOTE_USER}@{REMOTE_DOMAIN}"
    literal = f"[{ip}]" if ":" not in ip else f"[IPv6:{ip}]"
    sender = f"{SENDER}@{literal}"
    nmap = [
        ("", to),
        (SENDER, to),
        (f"{SENDER}@{domain}", to),
        (sender, to),
        (sender, f"{REMOTE_USER}%{REMOTE_DOMAIN}@{literal}"),
        (sender, f"{REMOTE_USER}%{REMOTE_DOMAIN}@{domain}"),
        (sender, f'"{to}"'),
        (sender, f'"{REMOTE_USER}%{REMOTE_DOMAIN}"'),
        (sender, f"{to}@{literal}"),
        (sender, f'"{to}"@{literal}'),
        (sender, f"{to}@{domain}"),
        (sender, f"@{literal}:{to}"),
        (sender, f"@{domain}:{to}"),
        (sender, f"{REMOTE_DOMAIN}!{REMOTE_USER}"),
        (sender, f"{REMOTE_DOMAIN}!{REMOTE_USER}@{literal}"),
        (sender, f"{REMOTE_DOMAIN}!{REMOTE_USER}@{domain}"),
    ]
    quoting = [
        (sender, f'"{to}"@{domain}'),
        (sender, f'"{REMOTE_USER}%{REMOTE_DOMAIN}"@{domain}'),
        (sender, f'"{REMOTE_DOMAIN}!{REMOTE_USER}"@{domain}'),
        (sender, f"{REMOTE_USER}@{REMOTE_DOMAIN}."),
    ]
    return nmap + quoting


def run(
    host: str,
    port: int,
    domain: str | None = None,
    timeout: float = 10.0,
    as_client: str | None = None,
    secret: str | None = None,
) -> Report:
    """Run the battery against host:port and return every reply; raise OSError if it cannot connect.

    With as_client, test as that address through XCLIENT when the server offers it (else from the
    connection's own address, which the report names); a refused XCLIENT raises SMTPResponseException.
    """
    with smtplib.SMTP(host, port, local_hostname="relaytest.invalid", timeout=timeout) as smtp:
        code, banner = smtp.ehlo()
        if not 200 <= code < 300:
            smtp.helo()
        sock = smtp.sock
        if sock is None:  # smtplib closes it when the server hangs up
            raise smtplib.SMTPServerDisconnected(f"{host}:{port} closed the connection")
        peer_ip = sock.getpeername()[0]
        client, xclient = sock.getsockname()[0], False
        if as_client and smtp.has_extn("xclient"):
            _xclient(smtp, as_client, secret)
            client, xclient = as_client, True
        domain = domain or _greeting_domain(banner) or peer_ip
        attempts = []
        for mail_from, rcpt_to in battery(domain, peer_ip):
            attempts.append(_attempt(smtp, mail_from, rcpt_to))
            smtp.rset()
    return Report(f"{host}:{port}", domain, tuple(attempts), client, xclient)


def _xclient(smtp: smtplib.SMTP, address: str, secret: str | None) -> None:
    """Claim address with XCLIENT, then greet again as the restarted session wants.

    The secret goes only to a server that lists SECRET among its XCLIENT attributes (relayd);
    Postfix authorises XCLIENT by client address alone and would refuse the unknown attribute.
    """
    command = f"XCLIENT ADDR={'IPV6:' + address if ':' in address else address}"
    if secret and "SECRET" in smtp.esmtp_features.get("xclient", "").upper().split():
        command += f" SECRET={secret}"
    code, reply = smtp.docmd(command)
    if code != 220:
        raise smtplib.SMTPResponseException(code, b"XCLIENT refused: " + reply)
    code, _ = smtp.ehlo()
    if not 200 <= code < 300:
        smtp.helo()


def _attempt(smtp: smtplib.SMTP, mail_from: str, rcpt_to: str) -> Attempt:
    code, reply = smtp.docmd(f"MAIL FROM:<{mail_from}>")
    if 200 <= code < 300:
        code, reply = smtp.docmd(f"RCPT TO:<{rcpt_to}>")
    return Attempt(mail_from, rcpt_to, code, reply.decode(errors="replace"))


def _greeting_domain(banner: bytes) -> str | None:
    first = banner.decode(errors="replace").split("\n", 1)[0].split()
    return first[0].lower() if first and "." in first[0] else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m relayd.selftest", description=__doc__.split("\n\n")[0])
    parser.add_argument("target", help="HOST:PORT of the SMTP server to test")
    parser.add_argument("--domain", help="a domain the server accepts mail for (default: from its greeting)")
    parser.add_argument("--as-client", metavar="ADDRESS", help="test as this untrusted address via XCLIENT")
    parser.add_argument("--secret-file", type=Path, metavar="FILE", help="relayd's --xclient-secret-file")
    args = parser.parse_args(argv)
    try:
        secret = args.secret_file.read_text().strip() if args.secret_file else None
        host, port, _ = split_host_port(args.target, what="target")
        report = run(host, port, domain=args.domain, as_client=args.as_client, secret=secret)
    except (TimeoutError, ValueError, OSError, smtplib.SMTPException) as exc:
        print(f"relaytest: cannot test {args.target}: {exc}", file=sys.stderr)
        return 1
    for attempt in report.attempts:
        mark = "RELAYED" if attempt.accepted else "refused"
        print(f"{mark:8} MAIL FROM:<{attempt.mail_from}> RCPT TO:<{attempt.rcpt_to}> -> {attempt.code} {attempt.reply}")
    verdict = "OPEN RELAY" if report.is_open_relay else "not an open relay"
    how = f"tested as {report.client} via XCLIENT" if report.xclient else f"tested from {report.client}"
    print(f"{report.target}: {verdict} ({report.accepted}/{len(report.attempts)} accepted, {how})")
    return 2 if report.is_open_relay else 0


if __name__ == "__main__":
    sys.exit(main())
