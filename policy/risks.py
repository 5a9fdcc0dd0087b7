"""Risk analysis: what in a policy could make the server an open relay, or is dead weight.

It reads a snapshot (the saved policy, or a draft's) plus the saved lists, so the dashboard and
the dialog judge exactly what relayd would enforce.
"""

import bisect
import functools
from dataclasses import dataclass
from typing import NamedTuple

import netaddr

from policy import addresses
from policy.models import InternalAddress, RoutingRestrictions, TrustedNetwork
from relayd import matcher

DANGER, WARNING, INFO = "danger", "warning", "info"
LOCALHOST = {(4, 0x7F000001, 0x7F000001), (6, 1, 1)}  # 127.0.0.1/32 and ::1/128 as (version, first, last)


@dataclass(frozen=True)
class Risk:
    """One finding. Danger means "this policy makes the server an open relay": saving one needs a confirmation."""

    level: str  # danger (open relay), warning, info
    code: str
    message: str
    headline: str = ""  # danger only: who may relay, in a few words, for the dashboard's red headline


def analyse(snapshot: dict, *, tls_ready: bool | None = None, selftest=None, nodes=()) -> list[Risk]:
    """Return the risks of a snapshot, the most severe first.

    `tls_ready` is whether the relayd nodes can offer STARTTLS (None: unknown, no node reported);
    `selftest` is the latest open-relay self-test, whose relayed attempts are evidence, not theory;
    `nodes` are relayd nodes with their reported proxy hosts and busiest peer (daemons.client_sources()).
    """
    flags = snapshot["restrictions"]
    found = _policy_findings(snapshot)
    risks = [*found.dangers, *found.public]
    if flags["allow_authenticated"] and tls_ready is False:
        risks.append(
            Risk(
                WARNING,
                "auth_without_tls",
                "Authentication is allowed, but relayd has no TLS certificate: AUTH is only offered after STARTTLS, "
                "so nobody can authenticate. Configure a certificate.",
            )
        )
    if selftest is not None and selftest.open_relay:
        risks.append(
            Risk(
                DANGER,
                "selftest_relayed",
                f"The last self-test of {selftest.target} relayed {selftest.accepted} of {selftest.total} attempts "
                f"({selftest.started_at:%Y-%m-%d %H:%M}). If the tester's own address is trusted, that is expected; "
                "otherwise the server is an open relay.",
            )
        )
    risks.extend(found.covered)
    risks.extend(_nat_traps(found.trusted, nodes))
    risks.extend(found.localhost)
    # The database filters: with thousands of entries, only the expired few are loaded.
    for network in TrustedNetwork.objects.expired():
        risks.append(
            Risk(
                INFO,
                "expired",
                f"{network} expired on {network.expires_at:%Y-%m-%d %H:%M} and is no longer trusted.",
            )
        )
    order = {DANGER: 0, WARNING: 1, INFO: 2}
    return sorted(risks, key=lambda risk: order[risk.level])


class _Findings(NamedTuple):
    """What the snapshot alone says, in the order analyse() lists it, and the trusted entries it judged."""

    trusted: list
    dangers: list[Risk]
    public: list[Risk]
    covered: list[Risk]
    localhost: list[Risk]


# The findings of the last snapshot analysed, kept with it: the saved policy's snapshot is one
# object per revision (tester.current_snapshot), so the dashboard and the dialog analyse each
# revision's 10,000 entries once, not on every page. A snapshot is never changed once built.
_last: tuple[dict, _Findings] | None = None


def _policy_findings(snapshot: dict) -> _Findings:
    global _last
    last = _last
    if last is not None and last[0] is snapshot:
        return last[1]
    flags = snapshot["restrictions"]
    trusted = (
        [_Listed(entry["id"], span(entry["network"]), entry["description"]) for entry in snapshot["trusted_networks"]]
        if flags["allow_listed_ips"]
        else []
    )
    denied = [span(entry["network"]) for entry in snapshot["denied_networks"]]
    internal = [entry["address"] for entry in snapshot["internal_addresses"]]
    public = [
        Risk(WARNING, "public_range", f"{entry.label()} is a public range: be sure every host in it is yours.")
        for entry in trusted
        if is_public_grant(entry.network.text)
    ]
    localhost = []
    if flags["allow_listed_ips"] and not LOCALHOST & {entry.network.span for entry in trusted}:
        localhost.append(
            Risk(INFO, "no_localhost", "localhost (127.0.0.1 and ::1) is not trusted: local programs cannot relay.")
        )
    found = _Findings(
        trusted,
        dangers(flags, [entry.network.text for entry in trusted], internal),
        public,
        _shadowed(trusted, denied),
        localhost,
    )
    _last = (snapshot, found)
    return found


SUMMARISE_AFTER = 3  # more findings of one kind than this become one line with "show all"
SUMMARIES = {
    "huge_range": "Open relay: {n} trusted entries make the server an open relay.",
    "public_range": "{n} trusted entries are public ranges: be sure every host in them is yours.",
    "shadowed": "{n} trusted entries are already covered by a broader entry.",
    "denied_trusted": "{n} trusted entries are inside the NEVER list: they can never relay.",
    "expired": "{n} trusted entries have expired and are no longer trusted.",
}


@dataclass(frozen=True)
class RiskGroup:
    """The findings of one kind; many of them read as one summary line."""

    level: str
    code: str
    risks: tuple[Risk, ...]

    @property
    def summary(self) -> str:
        """Return the one line standing for many findings, or "" when they are few enough to list."""
        if len(self.risks) <= SUMMARISE_AFTER:
            return ""
        return SUMMARIES.get(self.code, "{n} findings of the same kind.").format(n=len(self.risks))


def grouped(risks: list[Risk]) -> list[RiskGroup]:
    """Group the findings by kind, keeping the most severe first."""
    groups: dict[str, list[Risk]] = {}
    for risk in risks:
        groups.setdefault(risk.code, []).append(risk)
    return [RiskGroup(members[0].level, code, tuple(members)) for code, members in groups.items()]


def dangers(flags: dict, trusted: list[str], internal: list[str]) -> list[Risk]:
    """Return what makes a policy an open relay: the one definition of "danger".

    `trusted` is the text of the trusted networks in force (all of them only matter when "these IP
    addresses" is on: the caller passes none otherwise), `internal` the internal addresses.
    """
    risks = []
    for text in trusted:
        problem = open_relay_problem(text)
        if problem:
            risks.append(Risk(DANGER, "huge_range", f"Open relay: {problem}", _who(span(text))))
    if flags["allow_internal_addresses"] and len(internal) == 1:
        risks.append(
            Risk(
                DANGER,
                "internal_trap",
                "Open relay: “connecting to these internal addresses” is on with a single internal address. "
                "With one network card, everyone who reaches the server connects to it.",
                f"anyone who connects to {internal[0]} may relay",
            )
        )
    return risks


def saved_dangers() -> list[Risk]:
    """Return the dangers of the saved policy, reading only the columns they need.

    The same answer as the dangers of analyse(current snapshot), without building the snapshot:
    the open-relay guard asks twice per write, at 10,000 entries and more.
    """
    restrictions = RoutingRestrictions.load()
    flags = {name: getattr(restrictions, name) for name in ("allow_listed_ips", "allow_internal_addresses")}
    trusted = []
    if flags["allow_listed_ips"]:
        trusted = list(TrustedNetwork.objects.active().values_list("network", flat=True))
    internal = list(InternalAddress.objects.values_list("address", flat=True))
    return dangers(flags, trusted, internal)


def is_open_relay(risks: list[Risk]) -> bool:
    return any(risk.level == DANGER for risk in risks)


def policy_dangers(snapshot: dict) -> list[Risk]:
    """Return the risks that make this policy itself an open relay (not evidence such as a self-test)."""
    return [risk for risk in analyse(snapshot) if risk.level == DANGER]


def open_relay_headline(risks: list[Risk]) -> str:
    """Say plainly who may relay because of the dangers, e.g. "OPEN RELAY: any IPv4 host may relay"."""
    who = [risk.headline for risk in risks if risk.level == DANGER and risk.headline]
    return f"OPEN RELAY: {'; '.join(who)}." if who else ""


# A peer with at least this share of at least this many connections stands for many clients.
NAT_SHARE = 0.5
NAT_MIN_CONNECTIONS = 20


def _nat_traps(trusted: list["_Listed"], nodes) -> list[Risk]:
    """Return warnings for trusted networks that hold a proxy, or the one address most clients come from.

    Behind a NAT or load balancer every client arrives from one address: trusting it trusts them
    all, the leading cause of accidental open relays. Loopback is left out of the busiest-peer
    check: it is local programs and the self-test, and a proxy on this host is declared with
    --proxy-hosts, which the first check covers.
    """
    risks = []
    active = trusted  # the snapshot holds only entries in force
    for node in nodes:
        proxies = [netaddr.IPNetwork(text) for text in node.proxy_hosts]
        for proxy in proxies:
            for entry in active:
                if _overlap(proxy, entry.network):
                    risks.append(
                        Risk(
                            WARNING,
                            "trusted_proxy",
                            f"{entry.label()} contains {addresses.network_text(proxy)}, a proxy of relayd node "
                            f"{node.name} (--proxy-hosts). relayd judges the clients its PROXY headers name, but "
                            "whatever the proxy sends as itself would be trusted: trust the clients, not the proxy.",
                        )
                    )
        peer = node.top_peer or {}
        if peer.get("of", 0) < NAT_MIN_CONNECTIONS or peer["connections"] < NAT_SHARE * peer["of"]:
            continue
        address = netaddr.IPAddress(peer["address"])
        if address.is_loopback() or any(address in proxy for proxy in proxies):
            continue
        for entry in active:
            if entry.network.version == address.version and entry.network.first <= int(address) <= entry.network.last:
                risks.append(
                    Risk(
                        WARNING,
                        "nat_trap",
                        f"Most connections to relayd node {node.name} ({peer['connections']} of {peer['of']}) come "
                        f"from {address}, which {entry.label()} trusts. If it is a NAT or load balancer, every client "
                        "behind it may relay: have it send the PROXY protocol (relayd --proxy-hosts) and stop "
                        "trusting its address.",
                    )
                )
                break
    return risks


def _overlap(a, b) -> bool:
    return a.version == b.version and a.first <= b.last and b.first <= a.last


def _who(network: "Span") -> str:
    if network.prefixlen == 0:
        return f"any IPv{network.version} host may relay"
    return f"every host in {network.text} may relay"


class Span(NamedTuple):
    """A network as its canonical text and the integer range it covers: all the analysis compares."""

    text: str
    version: int
    first: int
    last: int
    prefixlen: int

    @property
    def span(self) -> tuple[int, int, int]:
        return self.version, self.first, self.last


class _Listed(NamedTuple):
    key: int
    network: Span
    description: str

    def label(self) -> str:
        return f"{self.network.text} ({self.description})" if self.description else self.network.text


# The analysis runs on every dashboard and dialog page over every entry, so each network text is
# parsed and judged once per process, with integer comparisons, rather than with netaddr per page.
_CACHE_SIZE = 1 << 17


@functools.lru_cache(maxsize=_CACHE_SIZE)
def span(text: str) -> Span:
    """Return a network's canonical text and integer range, however the text was spelled."""
    try:
        parsed = matcher.parse_network(text)  # relayd's parser: fast, and only for canonical text
    except ValueError:
        network = netaddr.IPNetwork(text)  # a revision recorded before the canonical text
        return Span(addresses.network_text(network), network.version, network.first, network.last, network.prefixlen)
    return Span(parsed.text, parsed.version, parsed.first, parsed.last, parsed.prefixlen)


_EMBEDDING = [(block.first, block.last) for block, _ in addresses.IPV4_EMBEDDING_BLOCKS]
_NON_GLOBAL = {
    version: [(block.first, block.last) for block in addresses.NON_GLOBAL_BLOCKS if block.version == version]
    for version in (4, 6)
}


@functools.lru_cache(maxsize=_CACHE_SIZE)
def open_relay_problem(text: str) -> str | None:
    """Return addresses.open_relay_problem() of a network text, asking it only when the range could be one.

    Its rule refuses prefixes broader than the public limit and IPv6 prefixes overlapping an
    IPv4-embedding block; any other network is answered None without building it in netaddr.
    """
    network = span(text)
    broad = network.prefixlen < addresses.BROADEST_PUBLIC_PREFIX[network.version]
    embeds = network.version == 6 and any(first <= network.last and network.first <= last for first, last in _EMBEDDING)
    if not (broad or embeds):
        return None
    return addresses.open_relay_problem(netaddr.IPNetwork(network.text))


@functools.lru_cache(maxsize=_CACHE_SIZE)
def is_public_grant(text: str) -> bool:
    """Tell whether trusting this network trusts public addresses (and is not an open relay already)."""
    network = span(text)
    if open_relay_problem(text):
        return False
    return not any(first <= network.first and network.last <= last for first, last in _NON_GLOBAL[network.version])


def _broadest_first(entry: _Listed) -> tuple[int, int, int]:
    network = entry.network
    return network.version, network.first, -network.last


def _shadowed(trusted: list[_Listed], denied: list[Span]) -> list[Risk]:
    """Find trusted entries covered by a broader trusted entry, or by the NEVER list: O(n log n)."""
    risks = []
    # Sorted by start, broadest first: an entry is covered when an earlier one reaches past its end.
    widest: dict[int, _Listed] = {}
    for entry in sorted(trusted, key=_broadest_first):
        cover = widest.get(entry.network.version)
        if cover is not None and cover.network.last >= entry.network.last:
            risks.append(Risk(INFO, "shadowed", f"{entry.label()} is already covered by {cover.label()}."))
        elif cover is None or entry.network.last > cover.network.last:
            widest[entry.network.version] = entry
    never: dict[int, list[Span]] = {4: [], 6: []}
    for network in sorted(denied, key=lambda n: (n.first, -n.last)):
        starts = never[network.version]
        if not starts or network.last > starts[-1].last:
            starts.append(network)
    firsts = {version: [network.first for network in networks] for version, networks in never.items()}
    for entry in trusted:
        candidates = never[entry.network.version]
        index = bisect.bisect_right(firsts[entry.network.version], entry.network.first) - 1
        if index >= 0 and candidates[index].last >= entry.network.last:
            risks.append(
                Risk(
                    WARNING,
                    "denied_trusted",
                    f"{entry.label()} is inside the NEVER list entry {candidates[index].text}: it can never relay.",
                )
            )
    return risks
