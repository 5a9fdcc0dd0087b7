"""Risk analysis: what in a policy could make the server an open relay, or is dead weight.

It reads a snapshot (the saved policy, or a draft's) plus the saved lists, so the dashboard and
the dialog judge exactly what relayd would enforce.
"""

import bisect
from dataclasses import dataclass

import netaddr
from django.utils import timezone

from policy import addresses
from policy.models import InternalAddress, RoutingRestrictions, TrustedNetwork

DANGER, WARNING, INFO = "danger", "warning", "info"
LOCALHOST = {netaddr.IPNetwork("127.0.0.1/32"), netaddr.IPNetwork("::1/128")}


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
    trusted = (
        [
            addresses.ListedNetwork(e["id"], netaddr.IPNetwork(e["network"]), e["description"])
            for e in snapshot["trusted_networks"]
        ]
        if flags["allow_listed_ips"]
        else []
    )
    denied = [netaddr.IPNetwork(e["network"]) for e in snapshot["denied_networks"]]
    internal = [entry["address"] for entry in snapshot["internal_addresses"]]
    risks = dangers(flags, [entry.network for entry in trusted], internal)
    for entry in trusted:
        if not addresses.open_relay_problem(entry.network) and _is_public(entry.network):
            risks.append(
                Risk(WARNING, "public_range", f"{entry.label()} is a public range: be sure every host in it is yours.")
            )
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
    risks.extend(_shadowed(trusted, denied))
    risks.extend(_nat_traps(trusted, nodes))
    if flags["allow_listed_ips"] and not LOCALHOST & {entry.network for entry in trusted}:
        risks.append(
            Risk(INFO, "no_localhost", "localhost (127.0.0.1 and ::1) is not trusted: local programs cannot relay.")
        )
    # The database filters: with thousands of entries, only the expired few are loaded.
    for network in TrustedNetwork.objects.filter(enabled=True, expires_at__lte=timezone.now()):
        risks.append(
            Risk(
                INFO,
                "expired",
                f"{network} expired on {network.expires_at:%Y-%m-%d %H:%M} and is no longer trusted.",
            )
        )
    order = {DANGER: 0, WARNING: 1, INFO: 2}
    return sorted(risks, key=lambda risk: order[risk.level])


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


def dangers(flags: dict, trusted: list[netaddr.IPNetwork], internal: list[str]) -> list[Risk]:
    """Return what makes a policy an open relay: the one definition of "danger".

    `trusted` is the trusted networks in force (all of them only matter when "these IP addresses"
    is on: the caller passes none otherwise), `internal` the internal addresses.
    """
    risks = []
    for network in trusted:
        problem = addresses.open_relay_problem(network)
        if problem:
            risks.append(Risk(DANGER, "huge_range", f"Open relay: {problem}", _who(network)))
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
        in_force = TrustedNetwork.objects.filter(enabled=True).exclude(expires_at__lte=timezone.now())
        trusted = [netaddr.IPNetwork(text) for text in in_force.values_list("network", flat=True)]
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


def _nat_traps(trusted: list[addresses.ListedNetwork], nodes) -> list[Risk]:
    """Return warnings for trusted networks that hold a proxy, or the one address most clients come from.

    Behind a NAT or load balancer every client arrives from one address: trusting it trusts them
    all, the leading cause of accidental open relays. Loopback is left out of the busiest-peer
    check: it is local programs and the self-test, and a proxy on this host is declared with
    --proxy-hosts, which the first check covers.
    """
    risks = []
    active = [entry for entry in trusted if entry.active]
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
            if address in entry.network:
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


def _overlap(a: netaddr.IPNetwork, b: netaddr.IPNetwork) -> bool:
    return a.version == b.version and a.first <= b.last and b.first <= a.last


def _who(network: netaddr.IPNetwork) -> str:
    if network.prefixlen == 0:
        return f"any IPv{network.version} host may relay"
    return f"every host in {network} may relay"


def _is_public(network: netaddr.IPNetwork) -> bool:
    return not any(network.version == block.version and network in block for block in addresses.NON_GLOBAL_BLOCKS)


def _shadowed(trusted: list[addresses.ListedNetwork], denied: list[netaddr.IPNetwork]) -> list[Risk]:
    """Find trusted entries covered by a broader trusted entry, or by the NEVER list: O(n log n)."""
    risks = []
    # Sorted by start, broadest first: an entry is covered when an earlier one reaches past its end.
    widest = {}
    for entry in sorted(trusted, key=lambda e: (e.network.version, e.network.first, -e.network.last)):
        cover = widest.get(entry.network.version)
        if cover is not None and cover.network.last >= entry.network.last:
            risks.append(Risk(INFO, "shadowed", f"{entry.label()} is already covered by {cover.label()}."))
        elif cover is None or entry.network.last > cover.network.last:
            widest[entry.network.version] = entry
    never = {4: [], 6: []}
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
                    f"{entry.label()} is inside the NEVER list entry {addresses.network_text(candidates[index])}: "
                    "it can never relay.",
                )
            )
    return risks
