"""Address parsing and most-specific network lookup; plain pytest, no Django."""

import ipaddress
import random
from datetime import UTC, datetime, timedelta

import pytest

from relayd.matcher import (
    Address,
    NetworkSet,
    network_order,
    parse_address,
    parse_host_address,
    parse_network,
    parse_networks,
)

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


def v4(text):
    return Address(4, int(ipaddress.IPv4Address(text)))


def v6(text):
    return Address(6, int(ipaddress.IPv6Address(text)))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("10.1.2.3", v4("10.1.2.3")),
        ("0.0.0.0", v4("0.0.0.0")),
        ("255.255.255.255", v4("255.255.255.255")),
        ("2001:db8::1", v6("2001:db8::1")),
        ("2001:DB8:0:0::1", v6("2001:db8::1")),
        ("::ffff:10.1.2.3", v4("10.1.2.3")),
        ("::ffff:a01:203", v4("10.1.2.3")),
        ("::a01:203", v6("::a01:203")),  # IPv4-compatible, not mapped: stays IPv6
        ("fe80::1%eth0", v6("fe80::1")),
        (ipaddress.IPv4Address("192.0.2.1"), v4("192.0.2.1")),
        (ipaddress.IPv6Address("::ffff:192.0.2.1"), v4("192.0.2.1")),
        (ipaddress.IPv6Address("2001:db8::2"), v6("2001:db8::2")),
    ],
)
def test_parse_address(text, expected):
    assert parse_address(text) == expected


@pytest.mark.parametrize(
    "text", ["", "10.1.2", "10.1.2.256", "10.1.2.3/32", "example.com", "2001:db8:::1", " 10.1.2.3", 1]
)
def test_parse_address_refuses(text):
    with pytest.raises(ValueError, match="not an IP address"):
        parse_address(text)


def test_address_str():
    assert str(v4("10.1.2.3")) == "10.1.2.3"
    assert str(v6("2001:db8::1")) == "2001:db8::1"


@pytest.mark.parametrize(
    ("text", "version", "first", "last"),
    [
        ("10.0.0.0/8", 4, "10.0.0.0", "10.255.255.255"),
        ("192.0.2.1/32", 4, "192.0.2.1", "192.0.2.1"),
        ("0.0.0.0/0", 4, "0.0.0.0", "255.255.255.255"),
        ("2001:db8::/32", 6, "2001:db8::", "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff"),
        ("::/0", 6, "::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"),
        ("::1/128", 6, "::1", "::1"),
        ("::102:304/128", 6, "::102:304", "::102:304"),  # glibc would print ::1.2.3.4
        ("2001:db8:0:1::/64", 6, "2001:db8:0:1::", "2001:db8:0:1:ffff:ffff:ffff:ffff"),
    ],
)
def test_parse_network(text, version, first, last):
    network = parse_network(text)
    assert (network.version, network.first, network.last) == (
        version,
        int(ipaddress.ip_address(first)),
        int(ipaddress.ip_address(last)),
    )
    assert network.prefixlen == int(text.partition("/")[2])
    assert str(network) == text


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("10.0.0.1/8", "host bits set: did you mean 10.0.0.0/8?"),
        ("2001:db8::1/32", "host bits set: did you mean 2001:db8::/32?"),
        ("10.0.0.0", "missing prefix length"),
        ("10.0.0.0/33", "prefix length must be a whole number from 0 to 32"),
        ("2001:db8::/129", "from 0 to 128"),
        ("10.0.0.0/08", "prefix length"),
        ("10.0.0.0/ 8", "prefix length"),
        ("10.0.0.0/+8", "prefix length"),
        ("10.0.0.0/", "prefix length"),
        ("10.0.0.0/\u0668", "prefix length"),  # Arabic-Indic eight: int() would take it
        ("10.0.0.0/255.0.0.0", "prefix length"),
        ("10.0.0.256/32", "not a valid IPv4 address"),
        ("010.0.0.0/8", "not a valid IPv4 address"),
        ("10.0.0/24", "not a valid IPv4 address"),
        ("2001:db8:::/48", "not a valid IPv6 address"),
        ("fe80::%eth0/64", "not a valid IPv6 address"),
        ("2001:DB8::/32", "not normalised: write it as 2001:db8::/32"),
        ("2001:db8:0::/48", "not normalised: write it as 2001:db8::/48"),
        ("2001:0db8::/32", "not normalised"),
        ("::1.2.3.4/128", "not normalised: write it as ::102:304/128"),
        ("::ffff:10.0.0.0/104", "IPv4-mapped IPv6 network: write it as IPv4 (10.0.0.0/8)"),
        ("::ffff:a01:203/128", "IPv4-mapped IPv6 network: write it as IPv4 (10.1.2.3/32)"),
    ],
)
def test_parse_network_refuses(text, problem):
    with pytest.raises(ValueError) as caught:
        parse_network(text)
    assert problem in str(caught.value)


def test_parse_network_agrees_with_ipaddress_on_normalised_ipv6():
    # The fast normalisation check leans on inet_ntop; ipaddress is the reference spelling.
    rng = random.Random(5952)
    for _ in range(3000):
        hextets = [rng.choice([0, 0, 0, 1, 0xFFFF, rng.getrandbits(16)]) for _ in range(8)]
        value = int("".join(f"{hextet:04x}" for hextet in hextets), 16)
        address = ipaddress.IPv6Address(value)
        if address.ipv4_mapped:
            continue
        assert parse_network(f"{address}/128").first == value
        for spelling in {address.exploded, address.exploded.upper(), str(address).upper()} - {str(address)}:
            with pytest.raises(ValueError, match="not normalised"):
                parse_network(f"{spelling}/128")


@pytest.mark.parametrize(
    ("text", "expected"),
    [("192.168.1.10", v4("192.168.1.10")), ("2001:db8::25", v6("2001:db8::25")), ("::", v6("::"))],
)
def test_parse_host_address(text, expected):
    assert parse_host_address(text) == expected


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("192.168.1.10/32", "single address without a prefix length, e.g. 192.168.1.10"),
        ("::ffff:192.168.1.10", "IPv4-mapped IPv6 address: write it as IPv4 (192.168.1.10)"),
        ("2001:DB8::25", "not normalised: write it as 2001:db8::25"),
        ("192.168.1", "not a valid IPv4 address"),
        ("", "not a valid IPv4 address"),
    ],
)
def test_parse_host_address_refuses(text, problem):
    with pytest.raises(ValueError) as caught:
        parse_host_address(text)
    assert problem in str(caught.value)


NESTED = [
    ("10.0.0.0/8", "lan"),
    ("10.1.0.0/16", "site"),
    ("10.1.2.0/24", "floor"),
    ("10.1.2.3/32", "host"),
    ("10.1.3.0/25", "low half"),
    ("10.1.3.128/25", "high half"),
    ("192.0.2.0/24", "doc"),
    ("2001:db8::/32", "v6"),
    ("2001:db8:1::/48", "v6 site"),
    ("2001:db8:1::1/128", "v6 host"),
]


def build(pairs, expiry=None):
    expiry = expiry or {}
    return NetworkSet((parse_network(text), payload, expiry.get(payload)) for text, payload in pairs)


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("10.1.2.3", "host"),
        ("10.1.2.4", "floor"),
        ("10.1.2.0", "floor"),
        ("10.1.2.255", "floor"),
        ("10.1.1.255", "site"),
        ("10.1.3.127", "low half"),
        ("10.1.3.128", "high half"),
        ("10.1.4.0", "site"),
        ("10.1.255.255", "site"),
        ("10.0.0.0", "lan"),
        ("10.2.0.0", "lan"),
        ("10.255.255.255", "lan"),
        ("9.255.255.255", None),
        ("11.0.0.0", None),
        ("0.0.0.0", None),
        ("255.255.255.255", None),
        ("192.0.2.77", "doc"),
        ("::ffff:10.1.2.3", "host"),
        ("::ffff:192.0.2.1", "doc"),
        ("2001:db8:1::1", "v6 host"),
        ("2001:db8:1::2", "v6 site"),
        ("2001:db8:2::", "v6"),
        ("2001:db8:ffff:ffff:ffff:ffff:ffff:ffff", "v6"),
        ("2001:db9::", None),
        ("::a01:203", None),  # same low 32 bits as 10.1.2.3, but IPv6: the families never mix
        ("::", None),
    ],
)
def test_lookup_returns_most_specific(address, expected):
    assert build(NESTED).lookup(parse_address(address), NOW) == expected


@pytest.mark.parametrize("seed", range(5))
def test_lookup_does_not_depend_on_entry_order(seed):
    shuffled = NESTED[:]
    random.Random(seed).shuffle(shuffled)
    ordered, scrambled = build(NESTED), build(shuffled)
    for text, _ in NESTED:
        network = parse_network(text)
        for value in (network.first, network.last, network.first - 1, network.last + 1):
            address = Address(network.version, value)
            assert scrambled.lookup(address, NOW) == ordered.lookup(address, NOW)


def brute_force(ranges, value):
    """Return the most specific entry containing value by linear scan; of duplicates, the later one nests inside."""
    containing = [(prefixlen, index) for first, last, prefixlen, index in ranges if first <= value <= last]
    return max(containing)[1] if containing else None


@pytest.mark.parametrize(
    ("seed", "version", "count", "prefix", "lengths"),
    [
        *[(seed, 4, 300, "10.0.0.0/16", (16, 32)) for seed in range(6)],
        *[(seed, 6, 300, "2001:db8::/112", (112, 128)) for seed in range(4)],
        (10, 4, 5000, "0.0.0.0/0", (8, 32)),  # a 4,096-bucket index over all of IPv4
        (11, 6, 3000, "2001:db8::/32", (32, 128)),
        (12, 4, 3, "192.0.2.0/24", (24, 32)),  # a handful of segments: a tiny index
    ],
)
def test_lookup_matches_brute_force(seed, version, count, prefix, lengths):
    # Random nested CIDR blocks (duplicates included) checked against a linear scan, with probes
    # inside, at the edges of and well outside the listed span, which the bucket index does not cover.
    rng = random.Random(seed)
    space = ipaddress.ip_network(prefix)
    bits = space.max_prefixlen
    pairs = []
    for index in range(count):
        value = int(space.network_address) + rng.randrange(space.num_addresses)
        network = ipaddress.ip_network((value, rng.randint(*lengths)), strict=False)
        if network.version == 6 and network.prefixlen >= 96 and network.network_address.ipv4_mapped:
            continue
        pairs.append((str(network), index))
    networks = build(pairs)
    ranges = []
    for text, index in pairs:
        network = ipaddress.ip_network(text)
        ranges.append((int(network.network_address), int(network.broadcast_address), network.prefixlen, index))
    probes = [int(space.network_address) + rng.randrange(space.num_addresses) for _ in range(1000)]
    for first, last, _, _ in ranges[:100]:
        probes += [first - 1, first, last, last + 1]
    probes += [0, 1, (1 << bits) - 1, int(space.network_address) - 1, int(space.broadcast_address) + 1]
    probes += [rng.getrandbits(bits) for _ in range(200)]
    for probe in probes:
        if 0 <= probe < 1 << bits:
            assert networks.lookup(Address(version, probe), NOW) == brute_force(ranges, probe), probe


@pytest.mark.parametrize(
    ("now", "address", "expected"),
    [
        (NOW, "10.1.2.3", "floor"),
        (NOW + timedelta(hours=1) - timedelta(microseconds=1), "10.1.2.3", "floor"),
        (NOW + timedelta(hours=1), "10.1.2.3", "site"),  # expired at exactly its instant
        (NOW + timedelta(hours=2), "10.1.2.3", "lan"),  # both inner entries expired: fall back to the /8
        (NOW + timedelta(hours=2), "10.1.9.9", "lan"),
        (NOW + timedelta(days=1), "192.0.2.1", None),  # expired with nothing around it
        (NOW, "192.0.2.1", "doc"),
    ],
)
def test_expired_entries_stop_matching(now, address, expected):
    pairs = [("10.0.0.0/8", "lan"), ("10.1.0.0/16", "site"), ("10.1.2.0/24", "floor"), ("192.0.2.0/24", "doc")]
    expiry = {
        "floor": NOW + timedelta(hours=1),
        "site": NOW + timedelta(hours=2),
        "doc": NOW + timedelta(hours=1),
    }
    assert build(pairs, expiry).lookup(parse_address(address), now) == expected


def test_duplicate_networks_fall_back_to_each_other():
    pairs = [("10.0.0.0/8", "first"), ("10.0.0.0/8", "second")]
    assert build(pairs).lookup(v4("10.0.0.1"), NOW) == "second"
    assert build(pairs, {"second": NOW}).lookup(v4("10.0.0.1"), NOW) == "first"


def test_whole_address_space():
    networks = build([("0.0.0.0/0", "any4"), ("::/0", "any6"), ("10.0.0.0/8", "lan")])
    assert networks.lookup(v4("255.255.255.255"), NOW) == "any4"
    assert networks.lookup(v4("10.0.0.1"), NOW) == "lan"
    assert networks.lookup(v6("ffff::"), NOW) == "any6"


def test_empty_set_matches_nothing():
    networks = build([])
    assert len(networks) == 0
    assert networks.lookup(v4("10.0.0.1"), NOW) is None
    assert networks.lookup(v6("::1"), NOW) is None


def test_len_counts_entries():
    assert len(build(NESTED)) == len(NESTED)


def random_entries(rng, space, lengths, count, expiring, taken):
    """Return up to count (network, payload, expires_at) triples in space, none of a network in taken."""
    entries = []
    for _ in range(count):
        value = int(space.network_address) + rng.randrange(space.num_addresses)
        network = ipaddress.ip_network((value, rng.randint(*lengths)), strict=False)
        if str(network) in taken or (
            network.version == 6 and network.prefixlen >= 96 and network.network_address.ipv4_mapped
        ):
            continue
        taken.add(str(network))
        expires_at = NOW + timedelta(hours=rng.randint(-2, 2)) if rng.random() < expiring else None
        entries.append((parse_network(str(network)), object(), expires_at))
    return entries


def probes(networks, rng, space, count):
    """Return addresses at and around each segment boundary of networks, and count random ones in space."""
    found = set()
    for version, (starts, *_) in networks._tables.items():
        for start in starts:
            found.update(
                Address(version, value) for value in (start - 1, start) if 0 <= value < 1 << space.max_prefixlen
            )
    found.update(
        Address(space.version, int(space.network_address) + rng.randrange(space.num_addresses)) for _ in range(count)
    )
    return found


@pytest.mark.parametrize(
    ("seed", "prefix", "lengths", "count"),
    [
        *[(seed, "10.0.0.0/16", (16, 32), 300) for seed in range(4)],
        *[(seed, "2001:db8::/112", (112, 128), 300) for seed in range(4, 7)],
        (7, "0.0.0.0/0", (1, 32), 3000),  # a 1,024-bucket index over all of IPv4
        (8, "10.0.0.0/8", (8, 32), 3000),  # changes of the one block enclosing all
        (9, "192.0.2.0/24", (24, 32), 3),
    ],
)
def test_updated_matches_a_fresh_build(seed, prefix, lengths, count):
    rng = random.Random(seed)
    space = ipaddress.ip_network(prefix)
    taken = set()
    entries = random_entries(rng, space, lengths, count, 0.3, taken)
    networks = NetworkSet(entries)
    for _ in range(4):
        rng.shuffle(entries)
        removed = entries[: rng.randint(0, min(8, len(entries)))]
        added = random_entries(rng, space, lengths, rng.randint(0, 8), 0.3, taken)
        entries = entries[len(removed) :] + added
        before = networks
        networks = before.updated(removed, added)
        fresh = NetworkSet(entries)
        assert len(networks) == len(fresh)
        for address in probes(fresh, rng, space, 300) | probes(before, rng, space, 0):
            for now in (NOW - timedelta(hours=3), NOW, NOW + timedelta(hours=3)):
                assert networks.lookup(address, now) is fresh.lookup(address, now), (address, now)


def test_updated_leaves_the_set_it_came_from_alone():
    lan, site = parse_network("10.0.0.0/8"), parse_network("10.1.0.0/16")
    original = NetworkSet([(lan, "lan", None)])
    updated = original.updated([(lan, "lan", None)], [(site, "site", None)])
    assert (original.lookup(v4("10.1.0.1"), NOW), original.lookup(v4("10.2.0.1"), NOW)) == ("lan", "lan")
    assert (updated.lookup(v4("10.1.0.1"), NOW), updated.lookup(v4("10.2.0.1"), NOW)) == ("site", None)
    assert (len(original), len(updated)) == (1, 1)


def test_updated_leaves_duplicate_networks_to_a_full_build():
    # Duplicates nest in snapshot order, which only the full list tells.
    lan, site = parse_network("10.0.0.0/8"), parse_network("10.1.0.0/16")
    networks = NetworkSet([(lan, "lan", None)])
    assert networks.updated([], [(lan, "again", None)]) is None
    assert NetworkSet([(lan, "lan", None), (lan, "again", None)]).updated([], [(site, "site", None)]) is None
    assert networks.updated([(lan, "not this payload", None)], []) is None
    assert networks.updated([(site, "site", None)], []) is None


def test_parse_networks_reads_a_column_as_parse_network_does_each():
    texts = ["0.0.0.0/0", "10.0.0.0/8", "10.0.0.0/24", "192.0.2.7/32", "::/0", "2001:db8::/32", "2001:db8:1::/48"]
    networks, orders = parse_networks(texts)
    assert networks == [parse_network(text) for text in texts]
    assert orders == [network_order(network) for network in networks]
    assert parse_networks([]) == ([], [])


@pytest.mark.parametrize(
    "texts",
    [
        ["10.0.0.1/8"],  # host bits
        ["10.0.0.0"],  # no prefix length
        ["10.0.0.0/08"],
        ["10.0.0.0/33"],
        ["010.0.0.0/8"],
        ["2001:DB8::/32"],  # not normalised
        ["::ffff:0:0/96"],  # IPv4-mapped: parse_network names the IPv4 form
        ["::102:304/128"],  # glibc writes it dotted: settled one by one
        ["::1.2.3.4/128"],
        ["2001:db8::/32", "10.0.0.0/8"],  # IPv6 before IPv4
        ["10.0.0.0/8", "2001:db8::/32", "10.1.0.0/16"],
        [8],
    ],
)
def test_parse_networks_raises_where_one_by_one_must_settle_it(texts):
    with pytest.raises(ValueError):
        parse_networks(texts)
