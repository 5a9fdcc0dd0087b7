"""Decide whether to accept one recipient from one client: the single, pure relay decision (docs/design.md).

The daemon calls decide() at RCPT time and the dashboard's "would this relay?" tester calls the
same function, so the two can never disagree.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from socket import AF_INET, AF_INET6, inet_pton

from relayd.config import CompiledPolicy, DeniedNetwork, LocalDomain, TrustedNetwork
from relayd.matcher import Address, parse_address


@dataclass(frozen=True, slots=True)
class Verdict:
    """The answer to one RCPT TO and the rule that decided it.

    rule is one of: no_policy, bad_recipient, sender_routing, postmaster, local_domain,
    denied_network, trusted_network, authenticated, internal_address, default_deny.
    route is the next hop of an accepted recipient in a local domain with a route of its
    own, else None (the daemon's smarthost, then MX).
    """

    allowed: bool
    code: int
    enhanced: str
    reply: str
    rule: str
    detail: str
    route: str | None = None


@dataclass(frozen=True, slots=True)
class Recipient:
    """A parsed RCPT TO path."""

    local_part: str  # with quoting removed
    domain: str | None  # lowercase without the trailing dot, "[...]" for an address literal, None for <Postmaster>
    routing: str | None  # how the path attempts sender-specified routing, or None
    source_route: str | None = None  # the RFC 5321 source route that was ignored ("@a,@b"), or None


# RFC 5321 4.1.2. Local parts keep their case: only the domain is case-insensitive.
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
# Postfix and Exim accept an unquoted local part with dots anywhere (.bob, bob., bob..smith; such
# addresses were handed out by Japanese mobile carriers), and so does relayd: the local part is
# the destination's business, and refusing it would only stop relaying that the MTAs allow.
_LOOSE_DOT_STRING = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+")
_QUOTED_STRING = re.compile(r'"((?:[\x20\x21\x23-\x5b\x5d-\x7e]|\\[\x20-\x7e])*)"')
_QUOTED_PAIR = re.compile(r"\\(.)")
_ROUTE = re.compile(r"(?:\[[^\]]*\]|[^:\[])*")
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_DOMAIN = re.compile(rf"{_LABEL}(?:\.{_LABEL})*")


def parse_recipient(path: str) -> Recipient:
    """Parse an RCPT TO path strictly (RFC 5321 4.1.2); raise ValueError saying what is malformed.

    The angle brackets are optional and one trailing dot on the domain is ignored. A source route
    (@a,@b:user@domain) is checked and then ignored, as RFC 5321 appendix C asks and as Postfix and
    Exim do: the mailbox after it is the recipient (docs/verdicts.md). Sender-specified routing
    (%, !, an @ in the local part) is recognised, not refused: whether it may pass depends on the client.
    """
    text = path
    if len(text) >= 2 and text[0] == "<" and text[-1] == ">":
        text = text[1:-1]
    if "<" in text or ">" in text:
        raise ValueError("unbalanced angle brackets")
    if not text.isascii():
        raise ValueError("non-ASCII address (SMTPUTF8 is not supported)")
    routing = None
    source_route, text = split_source_route(text)
    if source_route is not None and not all(
        hop[:1] == "@" and _is_route_hop(hop[1:]) for hop in source_route.split(",")
    ):
        raise ValueError("malformed source route")
    if text.startswith('"'):
        match = _QUOTED_STRING.match(text)
        if not match or text[match.end() : match.end() + 1] != "@":
            raise ValueError("malformed quoted local part")
        local_part = _QUOTED_PAIR.sub(r"\1", match[1])
        domain = text[match.end() + 1 :]
        if any(char in local_part for char in "@%!"):
            routing = "quoted local part containing @, % or !"
    else:
        local_part, at, domain = text.rpartition("@")
        if not at:
            # RFC 5321 4.5.1: <Postmaster> without a domain must always be accepted; a source
            # route must end in a mailbox (RFC 5321 4.1.2).
            if source_route is None and text.lower() == "postmaster":
                return Recipient(text, None, None)
            raise ValueError("missing @domain")
        # An unquoted @ is invalid RFC 5321, but user@remote@local is a known relay trick, so it
        # is recognised as routing (and refused as such), as Postfix reads it ("user@remote"@local),
        # rather than reported as a syntax error; Exim refuses it with 501 (docs/verdicts.md).
        if not all(_LOOSE_DOT_STRING.fullmatch(piece) for piece in local_part.split("@")):
            raise ValueError("malformed local part")
        routing = _unquoted_routing(local_part)
    return Recipient(local_part, _parse_domain(domain), routing, source_route)


def split_source_route(path: str) -> tuple[str | None, str]:
    """Split a path without angle brackets into its source route ("@a,@b") and the mailbox after it.

    The route is None if the path has none; a path that starts with @ but has no colon after its
    route is returned whole as the route, with an empty mailbox. The route ends at the first colon
    outside an address literal, because [IPv6:...] contains colons.
    """
    if not path.startswith("@"):
        return None, path
    match = _ROUTE.match(path)
    end = match.end() if match else 0  # always a match: the pattern matches the empty string
    if path[end : end + 1] != ":":
        return path, ""
    return path[:end], path[end + 1 :]


def decide(
    policy: CompiledPolicy | None,
    client_ip: str | Address,
    local_ip: str | None,
    auth_user: str | None,
    recipient: str,
    now: datetime | None = None,
) -> Verdict:
    """Return the verdict on one recipient; raise ValueError if client_ip or local_ip is not an IP address.

    client_ip is the SMTP client, local_ip the address it connected to, auth_user the name it
    authenticated as (None if it did not), recipient the RCPT TO path and now the time at which
    entry expiry is judged (default: the current time).
    """
    if policy is None:
        # Fail closed: without a policy nothing is known to be safe, and 4xx makes clients retry.
        return _verdict(False, 451, "4.3.0", "Relay policy not loaded, try again later", "no_policy", "no valid policy")
    try:
        rcpt = parse_recipient(recipient)
    except ValueError as exc:
        return _verdict(False, 501, "5.1.3", "Bad recipient address syntax", "bad_recipient", f"{recipient!r}: {exc}")
    if now is None:
        now = datetime.now(UTC)
    client = parse_address(client_ip)
    local = None if local_ip is None else parse_address(local_ip)
    denied = policy.denied.lookup(client, now)
    grant = None if denied else _relay_grant(policy, client, local, auth_user, now)
    local_domain = _local_domain(policy, rcpt.domain)
    route = local_domain.route if local_domain is not None else None

    ignored = f"; source route {rcpt.source_route} ignored (RFC 5321 C)" if rcpt.source_route else ""
    if rcpt.routing:
        # As Postfix's allow_untrusted_routing = no: only clients allowed to relay may route.
        if grant is None:
            return _refused("sender_routing", f"{rcpt.routing} from {client}, which may not relay{ignored}")
        rule, why = grant
        return _accepted(rule, f"{why}; sender-specified routing ({rcpt.routing}) allowed{ignored}", route)
    if rcpt.domain is None:
        return _accepted("postmaster", "<Postmaster> is always accepted (RFC 5321 4.5.1)", None)
    # A denied network ("can NEVER route mail") only loses the right to relay: as in Exchange
    # and Postfix, its clients may still deliver to our own domains, like any Internet host.
    if local_domain is not None:
        return _accepted("local_domain", _describe_local_domain(local_domain, rcpt.domain) + ignored, route)
    if denied is not None:
        return _refused("denied_network", f"denied network {_describe_network(denied, None)} can never relay{ignored}")
    if grant is not None:
        rule, why = grant
        return _accepted(rule, why + ignored, None)
    return _refused("default_deny", _explain_refusal(policy, rcpt.domain, client, local, auth_user) + ignored)


def _relay_grant(
    policy: CompiledPolicy, client: Address, local: Address | None, auth_user: str | None, now: datetime
) -> tuple[str, str] | None:
    """Return (rule, detail) of the first checkbox that lets this client relay, or None."""
    restrictions = policy.snapshot.restrictions
    if restrictions.allow_listed_ips:
        trusted = policy.trusted.lookup(client, now)
        if trusted is not None:
            return "trusted_network", f"trusted network {_describe_network(trusted, trusted.expires_at)}"
    # A session authenticated under an older revision loses relaying once its user is no longer exported.
    if restrictions.allow_authenticated and auth_user and auth_user in policy.users:
        return "authenticated", f"authenticated as {auth_user}"
    if restrictions.allow_internal_addresses and local is not None:
        internal = policy.internal.get(local)
        if internal is not None:
            named = f" ({internal.description})" if internal.description else ""
            return "internal_address", f"connected to internal address {local}{named}"
    return None


def _local_domain(policy: CompiledPolicy, domain: str | None) -> LocalDomain | None:
    """Return the most specific local-domain entry that covers domain, or None."""
    # Address literals are never local: the sender picks the address, so user@[our IP] is
    # treated like any remote recipient and relays only for clients allowed to relay.
    if domain is None or domain.startswith("["):
        return None
    entry = policy.local_domains.get(domain)
    if entry is not None:
        return entry
    while "." in domain:
        domain = domain.partition(".")[2]
        entry = policy.local_domains.get(domain)
        if entry is not None and entry.include_subdomains:
            return entry
    return None


def _explain_refusal(
    policy: CompiledPolicy, domain: str, client: Address, local: Address | None, auth_user: str | None
) -> str:
    """Say, checkbox by checkbox, why a client may not relay to domain."""
    restrictions = policy.snapshot.restrictions
    reasons = []
    if restrictions.allow_listed_ips:
        reasons.append(f"{client} is not in a trusted network")
    else:
        reasons.append("relaying by IP address is off")
    if not restrictions.allow_authenticated:
        reasons.append("relaying for authenticated clients is off")
    elif auth_user:
        reasons.append(f"{auth_user!r} is not an enabled SMTP user")
    else:
        reasons.append("the client did not authenticate")
    if not restrictions.allow_internal_addresses:
        reasons.append("relaying via internal addresses is off")
    else:
        reasons.append(f"{local if local is not None else 'the local address'} is not an internal address")
    return f"{domain} is not a local domain; " + "; ".join(reasons)


def _describe_network(entry: TrustedNetwork | DeniedNetwork, expires_at: datetime | None) -> str:
    notes = [entry.description] if entry.description else []
    added_on = entry.added_at.date().isoformat()
    notes.append(f"added by {entry.added_by} on {added_on}" if entry.added_by else f"added on {added_on}")
    if expires_at is not None:
        notes.append(f"expires {expires_at.isoformat()}")
    return f"{entry.network} ({', '.join(notes)})"


def _describe_local_domain(entry: LocalDomain, domain: str) -> str:
    covered = (
        f"local domain {entry.domain}" if domain == entry.domain else f"{domain} under local domain {entry.domain}"
    )
    return f"{covered}, route {entry.route}" if entry.route else f"{covered}, no route of its own"


def _unquoted_routing(local_part: str) -> str | None:
    if "@" in local_part:
        return "more than one @"
    if "%" in local_part:
        return "percent hack (%)"
    if "!" in local_part:
        return "bang path (!)"
    return None


def _parse_domain(domain: str) -> str:
    """Return the domain lowercased without its trailing dot, or an address literal as written."""
    if domain.startswith("[") and domain.endswith("]"):
        if not _is_address_literal(domain[1:-1]):
            raise ValueError("malformed address literal")
        return domain
    if domain.endswith("."):
        domain = domain[:-1]
    if not _is_domain(domain):
        raise ValueError("malformed domain")
    return domain.lower()


def _is_route_hop(text: str) -> bool:
    """Return whether text is a source-route hop: a domain, or an address literal as Postfix and Exim accept."""
    if text.startswith("[") and text.endswith("]"):
        return _is_address_literal(text[1:-1])
    return _is_domain(text)


def _is_domain(text: str) -> bool:
    return len(text) <= 255 and _DOMAIN.fullmatch(text) is not None


def _is_address_literal(text: str) -> bool:
    family, address = (AF_INET6, text[5:]) if text[:5].lower() == "ipv6:" else (AF_INET, text)
    # A General-address-literal (RFC 5321 4.1.3, tag:content) names an address type no mail
    # system defines: nothing can deliver to it, and Postfix and Exim answer 501 too.
    try:
        inet_pton(family, address)
    except OSError:
        return False
    return True


def _verdict(
    allowed: bool, code: int, enhanced: str, text: str, rule: str, detail: str, route: str | None = None
) -> Verdict:
    return Verdict(allowed, code, enhanced, f"{code} {enhanced} {text}", rule, detail, route)


def _accepted(rule: str, detail: str, route: str | None) -> Verdict:
    return _verdict(True, 250, "2.1.5", "Recipient OK", rule, detail, route)


def _refused(rule: str, detail: str) -> Verdict:
    # The same reply for every refusal: the detail is for the log, not for probing clients.
    return _verdict(False, 550, "5.7.1", "Relaying denied", rule, detail)
