"""Asking one DNS blocklist about one address, against the fake list on loopback."""

import netaddr
import pytest

from policy import dnsbl
from policy.addresses import AddressError, parse_public_address
from tests.dnsbl_server import CLEAR, LISTED, LISTED_V6, REASON, REASON_V6, REFUSED, SILENT, ZONE, FakeDnsbl


@pytest.fixture
def server():
    server = FakeDnsbl().start()
    server.list_address(LISTED, reason=REASON)
    server.list_address(LISTED_V6, reason=REASON_V6)
    server.list_address(REFUSED, codes=("127.255.255.254",))
    server.list_address("1.2.3.8", codes=("127.0.0.2", "127.0.0.4"))  # listed, without a TXT reason
    server.list_address("1.2.3.9", codes=("203.0.113.80",))  # a resolver that rewrites NXDOMAIN to an ad server
    server.list_address("1.2.3.10", codes=("127.255.255.252",))
    server.ignore(SILENT)
    yield server
    server.stop()


def ask(server, address, zone=ZONE):
    return dnsbl.lookup(netaddr.IPAddress(address), zone, dnsbl.make_resolver(server.address, timeout=0.5))


@pytest.mark.parametrize(
    ("address", "state", "reason"),
    [
        (LISTED, "listed", REASON),
        (LISTED_V6, "listed", REASON_V6),
        (CLEAR, "clear", ""),
        (REFUSED, "refused", "query through a public or open resolver, which this list refuses (127.255.255.254)"),
        ("1.2.3.10", "refused", "typing error in the DNSBL name (127.255.255.252)"),
        ("1.2.3.8", "listed", "listed (127.0.0.2, 127.0.0.4)"),
        ("1.2.3.9", "error", "unexpected answer 203.0.113.80: not a DNSBL return code"),
    ],
)
def test_each_answer_is_what_it_is(server, address, state, reason):
    answer = ask(server, address)
    assert answer.state == state
    assert answer.reason.startswith(reason)
    assert answer.listed == (state == "listed")


def test_a_listing_carries_its_return_codes_and_asks_for_the_txt_reason(server):
    assert ask(server, LISTED).codes == ("127.0.0.2",)
    name = dnsbl.query_name(netaddr.IPAddress(LISTED), ZONE)
    assert server.queries == [(name, "A"), (name, "TXT")]


def test_no_answer_is_a_timeout_that_names_the_resolver(server):
    answer = ask(server, SILENT)
    assert answer.state == "timeout"
    assert answer.reason == f"no answer from {server.address} within 0.5 s"


def test_a_resolver_that_refuses_is_a_refusal_not_a_clear_answer(server):
    answer = ask(server, LISTED, zone="zen.spamhaus.org")  # outside the fake's zone: REFUSED
    assert answer.state == "refused"
    assert "refused the query (REFUSED)" in answer.reason


def test_query_names_reverse_ipv4_octets_and_ipv6_nibbles():
    assert dnsbl.query_name(netaddr.IPAddress("192.0.2.99"), "zen.spamhaus.org") == "99.2.0.192.zen.spamhaus.org"
    assert (
        dnsbl.query_name(netaddr.IPAddress("2001:db8:1:2::68"), "zen.spamhaus.org")
        == "8.6.0.0.0.0.0.0.0.0.0.0.0.0.0.0.2.0.0.0.1.0.0.0.8.b.d.0.1.0.0.2.zen.spamhaus.org"
    )


@pytest.mark.parametrize(
    ("text", "zone"),
    [
        ("zen.spamhaus.org", "zen.spamhaus.org"),
        (" BL.SpamCop.net. ", "bl.spamcop.net"),
        ("b.barracudacentral.org", None),
    ],
)
def test_good_zones_are_normalised(text, zone):
    assert dnsbl.normalise_zone(text) == (zone or text)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "Enter the list's DNS zone"),
        (
            "https://www.spamhaus.org/zen/",
            "is a web address; enter only the DNS zone that is queried, e.g. www.spamhaus.org",
        ),
        ("zen spamhaus org", "contains a space"),
        ("localhost", "is a single label"),
        ("zen..spamhaus.org", "“(empty)” in zen..spamhaus.org is not a valid DNS label"),
        ("-bad.example.org", "“-bad” in -bad.example.org is not a valid DNS label"),
        ("zen.spam!haus.org", "“spam!haus”"),
        ("127.0.0.2", "looks like an IP address"),
        (".".join(["a" * 60] * 3 + ["org"]) + ".example", "must stay within DNS's 253"),
    ],
)
def test_broken_zones_get_a_clear_error(text, message):
    with pytest.raises(dnsbl.ZoneError) as caught:
        dnsbl.normalise_zone(text)
    assert message in str(caught.value)


@pytest.mark.parametrize(
    ("text", "server"),
    [
        ("127.0.0.1:5353", ("127.0.0.1", 5353)),
        ("[::1]:53", ("::1", 53)),
        ("192.0.2.53", ("192.0.2.53", 53)),
        ("::1", ("::1", 53)),
    ],
)
def test_resolver_setting_is_an_address_and_port(text, server):
    assert dnsbl.split_server(text) == server


@pytest.mark.parametrize("text", ["dns.example:53", "127.0.0.1:0", "127.0.0.1:99999", "127.0.0.1:dns", ":53"])
def test_a_malformed_resolver_setting_is_refused(text):
    with pytest.raises(ValueError, match=r"RELAYADMIN_DNS_RESOLVER=.* is not an address and port"):
        dnsbl.split_server(text)


@pytest.mark.parametrize("text", ["1.2.3.4", "81.2.69.142", "2a00:1450:4001::25", "::ffff:1.2.3.4"])
def test_public_addresses_may_be_watched(text):
    assert str(parse_public_address(text)) == text.removeprefix("::ffff:")


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("10.1.2.3", "a private address"),
        ("192.168.1.25", "a private address"),
        ("fd00::25", "a private address"),
        ("127.0.0.1", "a loopback address"),
        ("::1", "a loopback address"),
        ("169.254.1.1", "a link-local address"),
        ("fe80::1", "a link-local address"),
        ("100.64.0.1", "a shared (carrier-grade NAT) address"),
        ("192.0.2.7", "a documentation address"),
        ("2001:db8::25", "a documentation address"),
        ("240.0.0.1", "a reserved address"),
        ("224.0.0.1", "a multicast address"),
        ("0.0.0.0", "the unspecified address"),
    ],
)
def test_non_public_addresses_are_refused_because_dnsbls_only_list_public_ones(text, kind):
    with pytest.raises(AddressError) as caught:
        parse_public_address(text)
    assert caught.value.messages == [
        f"{text} is {kind}. DNSBLs only list public addresses: enter the address your server sends mail from on "
        "the Internet."
    ]


def test_networks_and_garbage_get_the_dialogs_messages():
    with pytest.raises(AddressError, match="is a network"):
        parse_public_address("1.2.3.0/24")
    with pytest.raises(AddressError, match="octet 256 is out of range"):
        parse_public_address("1.2.3.256")
