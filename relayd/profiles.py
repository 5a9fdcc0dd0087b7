"""Apply relay profiles: limits that narrow a grant to relay, never widen it (docs/design.md item 6).

decide() says whether a recipient may be relayed; for a relayed recipient this module then finds
whose profile applies and checks it. An authenticated session uses its SMTP user's profile;
otherwise the most specific trusted network containing the client. Delivery to local domains and
the other grants (internal addresses) are never limited.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from relayd.config import CompiledPolicy, Profile
from relayd.counters import Counters
from relayd.decision import Verdict
from relayd.matcher import parse_address

# The verdict rules under which a recipient is relayed by a grant a profile can belong to.
RELAY_RULES = frozenset({"trusted_network", "authenticated"})


@dataclass(frozen=True, slots=True)
class Holder:
    """Whose grant relays: a trusted network or an SMTP user, with its profile (None: no limits)."""

    kind: str  # "trusted_network" or "smtp_user"
    name: str  # the network's canonical text or the username
    profile: Profile | None

    @property
    def label(self) -> str:
        return f"trusted network {self.name}" if self.kind == "trusted_network" else f"SMTP user {self.name}"

    def key(self, what: str) -> str:
        """Return the counter key of what ("messages" or "recipients") for this holder."""
        return f"{what}:{self.kind}:{self.name}"


def holder(
    policy: CompiledPolicy, verdict: Verdict, client_ip: str, auth_user: str | None, now: datetime
) -> Holder | None:
    """Return whose grant relays this accepted recipient, or None if it is not relayed by a profiled grant."""
    if not verdict.allowed or verdict.rule not in RELAY_RULES:
        return None
    profiles = policy.snapshot.profiles
    if auth_user and policy.snapshot.restrictions.allow_authenticated and auth_user in policy.users:
        return Holder("smtp_user", auth_user, profiles.smtp_users.get(auth_user))
    network = policy.trusted.lookup(parse_address(client_ip), now)
    if network is None:
        return None
    return Holder("trusted_network", str(network.network), profiles.trusted_networks.get(network.id))


def sender_allowed(profile: Profile, sender: str) -> bool:
    """Return whether MAIL FROM is in one of the profile's sender domains or their subdomains."""
    if not profile.allowed_sender_domains:
        return True
    domain = sender.rpartition("@")[2].lower().rstrip(".")
    if not sender or not domain:
        return False  # the null sender has no domain to be allowed
    return any(domain == allowed or domain.endswith("." + allowed) for allowed in profile.allowed_sender_domains)


def limits_text(profile: Profile) -> str:
    """Return a profile's limits in words, for the tester, logs and config comments."""
    parts = []
    if profile.rate_limit_per_hour:
        parts.append(f"{profile.rate_limit_per_hour} messages/hour")
    if profile.recipients_per_hour:
        parts.append(f"{profile.recipients_per_hour} recipients/hour")
    if profile.allowed_sender_domains:
        parts.append("senders in " + ", ".join(profile.allowed_sender_domains))
    if profile.require_tls:
        parts.append("TLS only")
    return "; ".join(parts) or "no limits"


def _refusal(code: int, enhanced: str, text: str, rule: str, detail: str) -> Verdict:
    return Verdict(False, code, enhanced, f"{code} {enhanced} {text}", rule, detail)


async def check(
    counters: Counters, found: Holder, verdict: Verdict, sender: str, tls: bool, first_relayed: bool
) -> Verdict:
    """Return verdict if the holder's profile allows relaying this recipient, else the refusal; count it.

    first_relayed says this is the message's first relayed recipient, so the message counts once.
    Every relayed message and recipient is counted, limit or not, for the usage report.
    """
    profile = found.profile
    if profile is not None and profile.require_tls and not tls:
        return _refusal(
            530, "5.7.0", "Must issue a STARTTLS command first", "profile_tls", f"{found.label} relays only over TLS"
        )
    if profile is not None and not sender_allowed(profile, sender):
        domains = ", ".join(profile.allowed_sender_domains)
        return _refusal(
            553,
            "5.7.1",
            "Sender address rejected: not allowed to relay for this sender",
            "profile_sender",
            f"{found.label} relays only for senders in {domains}, not <{sender}>",
        )
    notes = []
    if first_relayed:
        limit = profile.rate_limit_per_hour if profile else None
        taken = await counters.take(found.key("messages"), 1, limit)
        if not taken.taken:
            return _rate_refusal(found, "messages", taken.total, limit)
        notes.append(_usage(taken.total, limit, "messages", taken.shared))
    limit = profile.recipients_per_hour if profile else None
    taken = await counters.take(found.key("recipients"), 1, limit)
    if not taken.taken:
        return _rate_refusal(found, "recipients", taken.total, limit)
    notes.append(_usage(taken.total, limit, "recipients", taken.shared))
    detail = f"{verdict.detail}; {found.label}: " + ", ".join(notes)
    return Verdict(verdict.allowed, verdict.code, verdict.enhanced, verdict.reply, verdict.rule, detail, verdict.route)


def _usage(count: int, limit: int | None, what: str, shared: bool) -> str:
    scope = "" if shared else " on this node"
    return f"{count} of {limit} {what} this hour{scope}" if limit else f"{count} {what} this hour{scope}"


def _rate_refusal(found: Holder, what: str, count: int, limit: int | None) -> Verdict:
    # As Postfix's anvil: "450 4.7.1 Error: too much mail from ...", a temporary refusal the
    # client retries later, so a legitimate burst is delayed, not lost.
    return _refusal(
        450,
        "4.7.1",
        f"Error: too many {what} from {found.label}, try again later",
        f"profile_{what}_rate",
        f"{found.label} relayed {count} of {limit} {what} this hour",
    )
