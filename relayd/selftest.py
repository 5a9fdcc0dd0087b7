"""The classic open-relay battery, run against an SMTP server over a real connection.

It sends the 16 MAIL FROM / RCPT TO forms of nmap's smtp-open-relay script (null sender, the
percent hack, quoted local parts, user@domain@host, source routes, bang paths, address literals)
plus a few quoting variants, and records each reply. It never sends DATA: every attempt ends with
RSET, so even an open relay delivers nothing.

Usage: python -m relayd.selftest HOST:PORT [--domain LOCAL-DOMAIN]   (exit 0: not open, 2: open)
"""

import argparse
import smtplib
import sys
from dataclasses import asdict, dataclass

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

    @property
    def accepted(self) -> int:
        return sum(attempt.accepted for attempt in self.attempts)

    @property
    def is_open_relay(self) -> bool:
        return self.accepted > 0

    def as_dict(self) -> dict:
        return {
            "target": self.target,
            "domain": self.domain,
            "accepted": self.accepted,
            "total": len(self.attempts),
            "open_relay": self.is_open_relay,
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


def run(host: str, port: int, domain: str | None = None, timeout: float = 10.0) -> Report:
    """Run the battery against host:port and return every reply; raise OSError if it cannot connect."""
    with smtplib.SMTP(host, port, local_hostname="relaytest.invalid", timeout=timeout) as smtp:
        code, banner = smtp.ehlo()
        if not 200 <= code < 300:
            smtp.helo()
        peer_ip = smtp.sock.getpeername()[0]
        domain = domain or _greeting_domain(banner) or peer_ip
        attempts = []
        for mail_from, rcpt_to in battery(domain, peer_ip):
            attempts.append(_attempt(smtp, mail_from, rcpt_to))
            smtp.rset()
    return Report(f"{host}:{port}", domain, tuple(attempts))


def _attempt(smtp: smtplib.SMTP, mail_from: str, rcpt_to: str) -> Attempt:
    code, reply = smtp.docmd(f"MAIL FROM:<{mail_from}>")
    if 200 <= code < 300:
        code, reply = smtp.docmd(f"RCPT TO:<{rcpt_to}>")
    return Attempt(mail_from, rcpt_to, code, reply.decode(errors="replace"))


def _greeting_domain(banner: bytes) -> str | None:
    first = banner.decode(errors="replace").split("\n", 1)[0].split()
    return first[0].lower() if first and "." in first[0] else None


def split_target(text: str) -> tuple[str, int]:
    """Return (host, port) from "host:port" or "[v6]:port"; raise ValueError if malformed."""
    host, sep, port = text.rpartition(":")
    if not sep or not (port.isascii() and port.isdigit()) or not host:
        raise ValueError(f"{text!r} is not HOST:PORT")
    return host.strip("[]"), int(port)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m relayd.selftest", description=__doc__.split("\n\n")[0])
    parser.add_argument("target", help="HOST:PORT of the SMTP server to test")
    parser.add_argument("--domain", help="a domain the server accepts mail for (default: from its greeting)")
    args = parser.parse_args(argv)
    try:
        report = run(*split_target(args.target), domain=args.domain)
    except (TimeoutError, ValueError, OSError, smtplib.SMTPException) as exc:
        print(f"relaytest: cannot test {args.target}: {exc}", file=sys.stderr)
        return 1
    for attempt in report.attempts:
        mark = "RELAYED" if attempt.accepted else "refused"
        print(f"{mark:8} MAIL FROM:<{attempt.mail_from}> RCPT TO:<{attempt.rcpt_to}> -> {attempt.code} {attempt.reply}")
    verdict = "OPEN RELAY" if report.is_open_relay else "not an open relay"
    print(f"{report.target}: {verdict} ({report.accepted}/{len(report.attempts)} accepted)")
    return 2 if report.is_open_relay else 0


if __name__ == "__main__":
    sys.exit(main())
