"""Table-driven tests of the one address validation that forms, API and import share."""

import netaddr
import pytest

from policy import addresses
from policy.addresses import AddressError, ListedNetwork


@pytest.mark.parametrize(
    ("address", "mask", "expected"),
    [
        ("10.1.0.0/16", "", "10.1.0.0/16"),
        ("10.1.0.0/255.255.0.0", "", "10.1.0.0/16"),
        ("10.1.0.0", "255.255.0.0", "10.1.0.0/16"),
        ("10.1.0.0", "16", "10.1.0.0/16"),
        ("  10.1.0.0 ", " 255.255.0.0 ", "10.1.0.0/16"),
        ("192.0.2.7", "", "192.0.2.7/32"),
        ("192.0.2.7", "255.255.255.255", "192.0.2.7/32"),
        ("0.0.0.0/0", "", "0.0.0.0/0"),
        ("2001:db8::/32", "", "2001:db8::/32"),
        ("2001:DB8:0:0::/32", "", "2001:db8::/32"),
        ("2001:0db8:0000:0000:0000:0000:0000:0000/32", "", "2001:db8::/32"),
        ("2001:db8::", "64", "2001:db8::/64"),
        ("::1", "", "::1/128"),
        ("fe80::/10", "", "fe80::/10"),
        ("::ffff:10.0.0.0/104", "", "10.0.0.0/8"),
        ("::ffff:192.0.2.7", "", "192.0.2.7/32"),
    ],
)
def test_accepted_forms_normalise(address, mask, expected):
    assert str(addresses.parse_network(address, mask)) == expected


@pytest.mark.parametrize(
    ("address", "mask", "code", "field", "fragment"),
    [
        ("192.168.1.5/24", "", "host_bits", "address", "Did you mean 192.168.1.0/24?"),
        ("192.168.1.5", "255.255.255.0", "host_bits", "address", "Did you mean 192.168.1.0/24?"),
        ("2001:db8::1/32", "", "host_bits", "address", "Did you mean 2001:db8::/32?"),
        ("10.0.0.0", "255.0.255.0", "noncontiguous_mask", "mask", "did you mean 255.0.0.0"),
        ("10.0.0.0/255.0.255.0", "", "noncontiguous_mask", "mask", "1-bits must be contiguous"),
        ("10.0.0.0", "0.0.255.255", "wildcard_mask", "mask", "the subnet mask is 255.255.0.0"),
        ("10.0.0.0", "foo", "invalid_mask", "mask", "not a subnet mask"),
        ("10.0.0.0", "33", "prefix_range", "mask", "0–32"),
        ("2001:db8::", "129", "prefix_range", "mask", "0–128"),
        ("2001:db8::", "ffff::", "invalid_mask", "mask", "number of bits"),
        ("10.0.0.0/8", "255.0.0.0", "double_mask", "mask", "already has a prefix"),
        ("192.168.1.256", "", "octet_range", "address", "octet 256 is out of range"),
        ("300.1.1.1/8", "", "octet_range", "address", "octet 300 is out of range"),
        ("010.1.1.1", "", "leading_zero", "address", "write 10.1.1.1"),
        ("fe80::1%eth0", "", "zone", "address", "without it"),
        ("not-an-address", "", "invalid", "address", "is not an IP address"),
        ("10.1", "", "invalid", "address", "is not an IP address"),
        ("2001:db8:::1", "", "invalid", "address", "is not an IP address"),
        ("", "", "required", "address", "Enter an IP address"),
    ],
)
def test_rejected_forms_name_the_field_and_suggest_a_fix(address, mask, code, field, fragment):
    with pytest.raises(AddressError) as caught:
        addresses.parse_network(address, mask)
    assert caught.value.code == code
    assert caught.value.field == field
    assert fragment in caught.value.messages[0]


@pytest.mark.parametrize(
    ("network", "refused"),
    [
        ("0.0.0.0/0", True),
        ("::/0", True),
        ("8.0.0.0/7", True),
        ("0.0.0.0/1", True),
        ("2000::/3", True),
        ("2a00::/16", True),
        ("10.0.0.0/8", False),
        ("8.0.0.0/8", False),
        ("172.16.0.0/12", False),
        ("2001:db8::/32", False),
        ("2a00:1450::/32", False),
        ("fc00::/7", False),
        ("fe80::/10", False),
        ("192.0.2.7/32", False),
    ],
)
def test_open_relay_ranges(network, refused):
    problem = addresses.open_relay_problem(netaddr.IPNetwork(network))
    assert (problem is not None) == refused
    if refused:
        assert "this makes the server an open relay" in problem


@pytest.mark.parametrize(
    ("text", "expected"),
    [("192.168.1.10", "192.168.1.10"), ("::ffff:192.168.1.10", "192.168.1.10"), ("2001:db8::25", "2001:db8::25")],
)
def test_parse_host(text, expected):
    assert str(addresses.parse_host(text)) == expected


def test_parse_host_refuses_a_network():
    with pytest.raises(AddressError, match="is a network"):
        addresses.parse_host("192.168.1.0/24")


def listed(*networks):
    return [ListedNetwork(i, netaddr.IPNetwork(n), f"entry {i}") for i, n in enumerate(networks)]


def test_duplicate_is_found():
    entry = addresses.find_duplicate(netaddr.IPNetwork("10.0.0.0/8"), listed("192.0.2.0/24", "10.0.0.0/8"))
    assert entry.key == 1
    assert "10.0.0.0/8 (entry 1) is already in this list" in addresses.duplicate_message(entry)


def test_overlap_warns_when_covered_and_when_covering():
    warnings = addresses.overlap_warnings(netaddr.IPNetwork("10.1.0.0/16"), listed("10.0.0.0/8", "10.1.2.0/24"))
    assert warnings == [
        "10.1.0.0/16 is already covered by 10.0.0.0/8 (entry 0).",
        "10.1.0.0/16 covers existing entries 10.1.2.0/24 (entry 1); they become redundant.",
    ]


def test_overlap_ignores_other_family_and_disjoint():
    assert addresses.overlap_warnings(netaddr.IPNetwork("10.1.0.0/16"), listed("2001:db8::/32", "10.2.0.0/16")) == []
