"""Property: decide() agrees with an independent reference of docs/design.md's rules on random policies and probes.

The reference is written from the design notes, not from decision.py: netaddr IPSet membership
for the networks, plain string comparison for the domains. Policies are drawn from small spaces,
so that networks nest and overlap, domains and subdomains collide, and entries expire around now.
"""

import ipaddress
from datetime import timedelta

import netaddr
import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from relayd.compact import compact_snapshot
from relayd.config import COMPACT_SCHEMA, NETWORK_LISTS, SnapshotError, compile_policy, validate_snapshot
from relayd.decision import decide
from tests.relayd.conftest import ALICE_HASH, policy
from tests.snapshots import network
from tests.strategies import NOW

# Networks inside 10.0.0.0/8 and 2001:db8::/32 (with a few of the IPv4-embedding kind), so that they overlap.
_V4 = st.integers(0, 2**24 - 1).map(lambda low: 10 << 24 | low)
_V6 = st.one_of(
    st.integers(0, 2**20 - 1).map(lambda low: 0x20010DB8 << 96 | low << 76),
    _V4.map(lambda v4: 0x64FF9B << 96 | v4),
    _V4,  # ::10.x.y.z, IPv4-compatible
)


@st.composite
def _network(draw) -> tuple[str, int, int]:
    """Return (canonical text, version, prefix length) of a network with its host bits clear."""
    if draw(st.booleans()):
        value, bits, prefixlen = draw(_V4), 32, draw(st.integers(8, 32))
    else:
        value, bits, prefixlen = draw(_V6), 128, draw(st.integers(32, 128))
    value &= ((1 << bits) - 1) ^ ((1 << (bits - prefixlen)) - 1)
    net = ipaddress.ip_network((value, prefixlen)) if bits == 128 else ipaddress.IPv4Network((value, prefixlen))
    return str(net), bits, prefixlen


_EXPIRY = st.none() | st.integers(-600, 600).filter(bool).map(lambda minutes: NOW + timedelta(minutes=minutes))
_LABEL = st.sampled_from(["a", "b", "mail", "xn--bcher-kva"])
_DOMAIN = st.lists(_LABEL, min_size=1, max_size=3).map(".".join)


@st.composite
def _policy(draw) -> dict:
    trusted = draw(st.lists(st.tuples(_network(), _EXPIRY), max_size=6))
    denied = draw(st.lists(_network(), max_size=3))
    internal = draw(st.lists(st.sampled_from(["10.0.0.1", "10.0.0.2", "2001:db8::1", "::a00:1"]), unique=True))
    domains = draw(st.lists(st.tuples(_DOMAIN, st.booleans()), max_size=4, unique_by=lambda pair: pair[0]))
    document = policy(
        serial=1,
        restrictions={
            "allow_authenticated": draw(st.booleans()),
            "allow_listed_ips": draw(st.booleans()),
            "allow_internal_addresses": draw(st.booleans()),
        },
        trusted_networks=[network(i, text, expires_at=expires) for i, ((text, _, _), expires) in enumerate(trusted, 1)],
        denied_networks=[network(i, text, denied=True) for i, (text, _, _) in enumerate(denied, 1)],
        internal_addresses=[{"id": i, "address": a, "description": ""} for i, a in enumerate(internal, 1)],
        local_domains=[{"domain": d, "include_subdomains": sub, "route": None} for d, sub in domains],
        smtp_users=[{"username": "alice", "password_hash": ALICE_HASH}],
    )
    return document


@st.composite
def _client(draw, document: dict) -> str:
    """Return a client address: often inside a listed network, sometimes written IPv4-mapped."""
    listed = [entry["network"] for entry in document["trusted_networks"] + document["denied_networks"]]
    if listed and draw(st.booleans()):
        net = ipaddress.ip_network(draw(st.sampled_from(listed)))
        address = net.network_address + draw(st.integers(0, net.num_addresses - 1))
    else:
        address = ipaddress.ip_address(draw(_V4 | _V6 | st.integers(0, 2**32 - 1)))
    if address.version == 4 and draw(st.booleans()):
        return f"::ffff:{address}"
    return str(address)


@st.composite
def _recipient(draw, document: dict) -> tuple[str, str]:
    """Return (local part, domain) as a client might send them: any case, perhaps a trailing dot or routing."""
    local_domains = [entry["domain"] for entry in document["local_domains"]]
    domain = draw(
        st.sampled_from(local_domains) if local_domains and draw(st.booleans()) else _DOMAIN | st.just("remote.test")
    )
    if draw(st.booleans()):
        domain = f"{draw(_LABEL)}.{domain}"
    if draw(st.booleans()):
        domain = domain.upper()
    if draw(st.booleans()):
        domain += "."
    local = draw(st.sampled_from(["bob", "Bob.Smith", "bob%remote.test", "remote!bob", "a+tag"]))
    return local, domain


class Reference:
    """docs/design.md's policy semantics, over netaddr sets of the snapshot's networks."""

    def __init__(self, document: dict) -> None:
        self.document = document
        self.trusted = netaddr.IPSet(
            entry["network"]
            for entry in document["trusted_networks"]
            if entry["expires_at"] is None or NOW.isoformat() < entry["expires_at"]
        )
        self.denied = netaddr.IPSet(entry["network"] for entry in document["denied_networks"])
        self.internal = {ipaddress.ip_address(entry["address"]) for entry in document["internal_addresses"]}

    def accepts(self, client: str, local: str | None, auth_user: str | None, rcpt: tuple[str, str]) -> bool:
        """Return whether the recipient is accepted."""
        client_ip = netaddr.IPAddress(client)
        if client_ip.is_ipv4_mapped():  # rule 1: an IPv4-mapped address is the IPv4 address
            client_ip = client_ip.ipv4()
        flags = self.document["restrictions"]
        local_part, domain = rcpt
        domain = domain.lower().removesuffix(".")  # rule 2: case-insensitive, a trailing dot ignored
        may_relay = client_ip not in self.denied and (  # rule 4, the NEVER list overriding every kind of trust
            (flags["allow_listed_ips"] and client_ip in self.trusted)
            or (flags["allow_authenticated"] and auth_user == "alice")
            or (
                flags["allow_internal_addresses"] and local is not None and ipaddress.ip_address(local) in self.internal
            )
        )
        if "%" in local_part or "!" in local_part:  # rule 2: sender routing only from clients that may relay
            return may_relay
        is_local = any(
            domain == entry["domain"] or (entry["include_subdomains"] and domain.endswith("." + entry["domain"]))
            for entry in self.document["local_domains"]
        )
        return is_local or may_relay  # rule 3, then rule 4


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_decide_agrees_with_the_reference(data):
    document = data.draw(_policy())
    forms = [compile_policy(validate_snapshot(document))]
    # The same policy with compact network lists (schema 3) decides alike; these hold each network once.
    compact = {**compact_snapshot(document), "schema": COMPACT_SCHEMA}
    if all(len({entry["network"] for entry in document[key]}) == len(document[key]) for key in NETWORK_LISTS):
        forms.append(compile_policy(validate_snapshot(compact)))
    else:
        with pytest.raises(SnapshotError, match="holds each network once"):
            validate_snapshot(compact)
    reference = Reference(document)
    for _ in range(8):
        client = data.draw(_client(document))
        local = data.draw(st.none() | st.sampled_from(["10.0.0.1", "2001:db8::1", "::a00:1", "192.0.2.1"]))
        auth_user = data.draw(st.sampled_from([None, "alice", "mallory"]))
        local_part, domain = data.draw(_recipient(document))
        expected = reference.accepts(client, local, auth_user, (local_part, domain))
        for compiled in forms:
            verdict = decide(compiled, client, local, auth_user, f"<{local_part}@{domain}>", now=NOW)
            assert verdict.allowed == expected, (client, local, auth_user, local_part, domain, verdict)
        event(verdict.rule)
