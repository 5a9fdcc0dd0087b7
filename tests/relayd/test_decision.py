"""The relay decision, table by table (docs/design.md "Policy semantics"); plain pytest, no Django."""

from datetime import UTC, datetime, timedelta
from itertools import product

import pytest

from relayd.config import RESTRICTION_KEYS, compile_policy, validate_snapshot
from relayd.decision import Recipient, decide, parse_recipient, split_source_route
from tests.snapshots import LISTS, network, restrictions, snapshot

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
LAB_EXPIRES = NOW + timedelta(days=3)
ALICE_HASH = "pbkdf2_sha256$1000$NaClNaClNaClNaCl$nZQjQjg4q0dZ/pBo6BL7fH3xyVgqXnGIhmjBlaahFNw="


def make_policy(listed_ips=True, authenticated=True, internal=True, **lists):
    """Compile a policy with the given checkboxes; keyword arguments replace whole lists."""
    sample = {
        "trusted_networks": [
            network(3, "10.0.0.0/8", "LAN"),
            network(4, "10.1.2.0/24", "lab", LAB_EXPIRES.isoformat()),
            network(5, "2001:db8:10::/48", "v6 LAN"),
        ],
        "denied_networks": [
            network(1, "10.66.0.0/16", "guest Wi-Fi", denied=True),
            network(2, "2001:db8:10:66::/64", "v6 guests", denied=True),
        ],
        "internal_addresses": [
            {"id": 1, "address": "192.168.1.10", "description": "LAN interface"},
            {"id": 2, "address": "2001:db8::25", "description": ""},
        ],
        "local_domains": [
            {"domain": "example.com", "include_subdomains": True, "route": "mail.internal.example.com:25"},
            {"domain": "xn--bcher-kva.example", "include_subdomains": False, "route": None},
            {"domain": "exact.example.com", "include_subdomains": False, "route": "[2001:db8::26]:25"},
        ],
        "smtp_users": [{"username": "alice", "password_hash": ALICE_HASH}],
    }
    document = snapshot(authenticated=authenticated, listed_ips=listed_ips, internal=internal, **{**sample, **lists})
    return compile_policy(validate_snapshot(document))


EMPTY = {key: [] for key in LISTS}
POLICY = make_policy()
OUTSIDER = "203.0.113.9"
PUBLIC_IP = "198.51.100.1"  # the relay's own public address, not an internal one
EXAMPLE_ROUTE = "mail.internal.example.com:25"


@pytest.mark.parametrize(
    ("client", "local", "user", "recipient", "rule", "detail", "route"),
    [
        # Local domains: accepted from anyone, with the domain's route.
        (OUTSIDER, PUBLIC_IP, None, "bob@example.com", "local_domain", "local domain example.com", EXAMPLE_ROUTE),
        (OUTSIDER, PUBLIC_IP, None, "<bob@example.com>", "local_domain", "example.com", EXAMPLE_ROUTE),
        (OUTSIDER, PUBLIC_IP, None, "Bob@EXAMPLE.Com.", "local_domain", "example.com", EXAMPLE_ROUTE),
        (OUTSIDER, PUBLIC_IP, None, "bob@mx.sales.example.com", "local_domain", "under local domain", EXAMPLE_ROUTE),
        (
            OUTSIDER,
            PUBLIC_IP,
            None,
            "bob@exact.example.com",
            "local_domain",
            "route [2001:db8::26]:25",
            "[2001:db8::26]:25",
        ),
        # exact.example.com takes no subdomains, but example.com around it does.
        (
            OUTSIDER,
            PUBLIC_IP,
            None,
            "bob@a.exact.example.com",
            "local_domain",
            "local domain example.com",
            EXAMPLE_ROUTE,
        ),
        (OUTSIDER, PUBLIC_IP, None, "bob@xn--bcher-kva.example", "local_domain", "no route of its own", None),
        (OUTSIDER, PUBLIC_IP, None, '"john smith"@example.com', "local_domain", "example.com", EXAMPLE_ROUTE),
        (OUTSIDER, PUBLIC_IP, None, "<Postmaster>", "postmaster", "RFC 5321", None),
        (OUTSIDER, PUBLIC_IP, None, "postmaster", "postmaster", "RFC 5321", None),
        # A denied client still delivers to our own domains; it only may not relay.
        ("10.66.1.1", PUBLIC_IP, None, "bob@example.com", "local_domain", "example.com", EXAMPLE_ROUTE),
        # Relaying by trusted network, IPv4, IPv6 and IPv4-mapped; the tightest entry is named.
        (
            "10.9.9.9",
            PUBLIC_IP,
            None,
            "x@remote.example",
            "trusted_network",
            "10.0.0.0/8 (LAN, added by alice on ",
            None,
        ),
        ("10.1.2.3", PUBLIC_IP, None, "x@remote.example", "trusted_network", "10.1.2.0/24 (lab, added by alice", None),
        ("10.1.2.3", PUBLIC_IP, None, "x@remote.example", "trusted_network", "expires 2026-12-01T12:00:00+00:00", None),
        ("2001:db8:10::5", PUBLIC_IP, None, "x@remote.example", "trusted_network", "2001:db8:10::/48 (v6 LAN", None),
        ("::ffff:10.9.9.9", PUBLIC_IP, None, "x@remote.example", "trusted_network", "10.0.0.0/8", None),
        ("10.9.9.9", PUBLIC_IP, None, "x@[192.0.2.1]", "trusted_network", "10.0.0.0/8", None),
        # Relaying by authentication and by internal address.
        (OUTSIDER, PUBLIC_IP, "alice", "x@remote.example", "authenticated", "authenticated as alice", None),
        (OUTSIDER, "192.168.1.10", None, "x@remote.example", "internal_address", "192.168.1.10 (LAN interface)", None),
        (OUTSIDER, "::ffff:192.168.1.10", None, "x@remote.example", "internal_address", "192.168.1.10", None),
        (OUTSIDER, "2001:db8::25", None, "x@remote.example", "internal_address", "internal address 2001:db8::25", None),
    ],
)
def test_accepted(client, local, user, recipient, rule, detail, route):
    verdict = decide(POLICY, client, local, user, recipient, NOW)
    assert (verdict.allowed, verdict.code, verdict.enhanced, verdict.rule) == (True, 250, "2.1.5", rule)
    assert verdict.reply.startswith("250 2.1.5 ")
    assert detail in verdict.detail
    assert verdict.route == route


@pytest.mark.parametrize(
    ("client", "local", "user", "recipient", "rule", "detail"),
    [
        (OUTSIDER, PUBLIC_IP, None, "x@remote.example", "default_deny", "remote.example is not a local domain"),
        (OUTSIDER, PUBLIC_IP, None, "x@remote.example", "default_deny", "203.0.113.9 is not in a trusted network"),
        (OUTSIDER, PUBLIC_IP, "mallory", "x@remote.example", "default_deny", "'mallory' is not an enabled SMTP user"),
        (OUTSIDER, "192.168.1.11", None, "x@remote.example", "default_deny", "192.168.1.11 is not an internal address"),
        (OUTSIDER, None, None, "x@remote.example", "default_deny", "the local address is not an internal address"),
        ("::ffff:203.0.113.9", PUBLIC_IP, None, "x@remote.example", "default_deny", "203.0.113.9 is not in a trusted"),
        ("2001:db8:11::1", PUBLIC_IP, None, "x@remote.example", "default_deny", "2001:db8:11::1 is not in a trusted"),
        # Subdomains only where the entry says so; address literals are never local.
        (OUTSIDER, PUBLIC_IP, None, "x@sub.xn--bcher-kva.example", "default_deny", "is not a local domain"),
        (OUTSIDER, PUBLIC_IP, None, "x@notexample.com", "default_deny", "notexample.com is not a local domain"),
        (OUTSIDER, PUBLIC_IP, None, "x@[192.168.1.10]", "default_deny", "[192.168.1.10] is not a local domain"),
        (OUTSIDER, PUBLIC_IP, None, "x@[IPv6:2001:db8::25]", "default_deny", "is not a local domain"),
        # A denied network can never relay, whatever else holds.
        (
            "10.66.1.1",
            PUBLIC_IP,
            None,
            "x@remote.example",
            "denied_network",
            "10.66.0.0/16 (guest Wi-Fi, added by alice",
        ),
        ("10.66.1.1", PUBLIC_IP, "alice", "x@remote.example", "denied_network", "can never relay"),
        ("10.66.1.1", "192.168.1.10", "alice", "x@remote.example", "denied_network", "can never relay"),
        ("::ffff:10.66.1.1", PUBLIC_IP, None, "x@remote.example", "denied_network", "10.66.0.0/16"),
        ("2001:db8:10:66::1", PUBLIC_IP, None, "x@remote.example", "denied_network", "2001:db8:10:66::/64 (v6 guests"),
    ],
)
def test_relaying_refused(client, local, user, recipient, rule, detail):
    verdict = decide(POLICY, client, local, user, recipient, NOW)
    assert (verdict.allowed, verdict.code, verdict.enhanced, verdict.rule) == (False, 550, "5.7.1", rule)
    assert verdict.reply == "550 5.7.1 Relaying denied"
    assert detail in verdict.detail
    assert verdict.route is None


def test_expired_trust_falls_back_to_the_enclosing_network():
    before = decide(POLICY, "10.1.2.3", PUBLIC_IP, None, "x@remote.example", LAB_EXPIRES - timedelta(seconds=1))
    after = decide(POLICY, "10.1.2.3", PUBLIC_IP, None, "x@remote.example", LAB_EXPIRES)
    assert "10.1.2.0/24" in before.detail
    assert after.allowed
    assert "10.0.0.0/8" in after.detail


def test_expired_trust_stops_relaying():
    # Without the /8 around it, an expired /24 leaves its clients untrusted.
    policy = make_policy(trusted_networks=[network(4, "10.1.2.0/24", "lab", LAB_EXPIRES.isoformat())])
    assert decide(policy, "10.1.2.3", PUBLIC_IP, None, "x@remote.example", NOW).allowed
    verdict = decide(policy, "10.1.2.3", PUBLIC_IP, None, "x@remote.example", LAB_EXPIRES + timedelta(hours=1))
    assert (verdict.allowed, verdict.rule) == (False, "default_deny")


# Each checkbox alone decides for the client that depends on it.
CLIENTS = {
    "allow_listed_ips": ("10.9.9.9", PUBLIC_IP, None, "trusted_network", "relaying by IP address is off"),
    "allow_authenticated": (OUTSIDER, PUBLIC_IP, "alice", "authenticated", "relaying for authenticated clients is off"),
    "allow_internal_addresses": (
        OUTSIDER,
        "192.168.1.10",
        None,
        "internal_address",
        "relaying via internal addresses is off",
    ),
}


def test_every_checkbox_has_a_client_that_depends_on_it():
    # A new checkbox needs its meaning in decide() and its row above.
    assert CLIENTS.keys() == set(RESTRICTION_KEYS)


@pytest.mark.parametrize("flags", list(product([True, False], repeat=len(RESTRICTION_KEYS))))
@pytest.mark.parametrize("kind", CLIENTS)
def test_each_checkbox(flags, kind):
    on = dict(zip(RESTRICTION_KEYS, flags, strict=True))
    policy = make_policy(restrictions=restrictions(**on))
    client, local, user, rule, off = CLIENTS[kind]
    verdict = decide(policy, client, local, user, "x@remote.example", NOW)
    enabled = on[kind]
    assert verdict.allowed is enabled
    if enabled:
        assert verdict.rule == rule
    else:
        assert (verdict.code, verdict.enhanced, verdict.rule) == (550, "5.7.1", "default_deny")
        assert off in verdict.detail


@pytest.mark.parametrize(
    ("client", "local", "user"),
    [
        ("10.9.9.9", "192.168.1.10", "alice"),
        ("2001:db8:10::5", "2001:db8::25", "alice"),
        (OUTSIDER, PUBLIC_IP, None),
    ],
)
@pytest.mark.parametrize("restrictions", [(True, True, True), (False, False, False)])
def test_empty_policy_never_relays(client, local, user, restrictions):
    policy = make_policy(*restrictions, **EMPTY)
    for recipient in ("x@remote.example", "bob@example.com", "x@[192.168.1.10]"):
        verdict = decide(policy, client, local, user, recipient, NOW)
        assert (verdict.allowed, verdict.code, verdict.rule) == (False, 550, "default_deny")


@pytest.mark.parametrize("recipient", ["x@remote.example", "bob@example.com", "<Postmaster>", "not an address"])
def test_no_policy_fails_closed(recipient):
    verdict = decide(None, "10.9.9.9", "192.168.1.10", "alice", recipient, NOW)
    assert (verdict.allowed, verdict.code, verdict.enhanced, verdict.rule) == (False, 451, "4.3.0", "no_policy")
    assert verdict.reply.startswith("451 4.3.0 ")


RELAY_TRICKS = [
    ("user%remote.example@example.com", "percent hack"),
    ("<user%remote.example@example.com>", "percent hack"),
    ("remote.example!user@example.com", "bang path"),
    ('"user@remote.example"@example.com', "quoted local part"),
    ('"user%remote.example"@example.com', "quoted local part"),
    ('"remote.example!user"@example.com', "quoted local part"),
    ('"user\\@remote.example"@example.com', "quoted local part"),
    ("<@relay.example:user%remote.example@example.com>", "percent hack"),
    ("user@remote.example@example.com", "more than one @"),
    ("<user@remote.example@example.com>", "more than one @"),
]


@pytest.mark.parametrize(("recipient", "trick"), RELAY_TRICKS)
@pytest.mark.parametrize(
    ("client", "local", "user"),
    [(OUTSIDER, PUBLIC_IP, None), ("10.66.1.1", "192.168.1.10", "alice"), (OUTSIDER, "192.168.1.11", "mallory")],
)
def test_sender_routing_refused_from_untrusted_clients(recipient, trick, client, local, user):
    verdict = decide(POLICY, client, local, user, recipient, NOW)
    assert (verdict.allowed, verdict.code, verdict.enhanced, verdict.rule) == (False, 550, "5.7.1", "sender_routing")
    assert verdict.reply.startswith("550 5.7.1 ")
    assert trick in verdict.detail


@pytest.mark.parametrize(("recipient", "trick"), RELAY_TRICKS)
@pytest.mark.parametrize(
    ("client", "local", "user", "rule"),
    [
        ("10.9.9.9", PUBLIC_IP, None, "trusted_network"),
        (OUTSIDER, PUBLIC_IP, "alice", "authenticated"),
        (OUTSIDER, "192.168.1.10", None, "internal_address"),
    ],
)
def test_sender_routing_allowed_from_trusted_clients(recipient, trick, client, local, user, rule):
    verdict = decide(POLICY, client, local, user, recipient, NOW)
    assert (verdict.allowed, verdict.code, verdict.enhanced, verdict.rule) == (True, 250, "2.1.5", rule)
    assert f"sender-specified routing ({trick}" in verdict.detail


def test_routed_recipient_in_a_local_domain_keeps_its_route():
    verdict = decide(POLICY, "10.9.9.9", PUBLIC_IP, None, "user%remote.example@example.com", NOW)
    assert verdict.route == EXAMPLE_ROUTE
    source_routed = decide(POLICY, "10.9.9.9", PUBLIC_IP, None, "<@example.com:user@remote.example>", NOW)
    assert source_routed.route is None


# RFC 5321 appendix C: a source route is ignored and the mailbox after it decides, as in Postfix
# and Exim. Routing through a local domain to a remote mailbox is therefore still relaying.
SOURCE_ROUTES = [
    ("<@example.com:user@remote.example>", OUTSIDER, None, False, "default_deny"),
    ("<@example.com,@relay.example:user@remote.example>", OUTSIDER, None, False, "default_deny"),
    ("<@example.com:user@remote.example>", "10.66.1.1", None, False, "denied_network"),
    ("<@example.com:user@remote.example>", "10.9.9.9", None, True, "trusted_network"),
    ("<@example.com:user@remote.example>", OUTSIDER, "alice", True, "authenticated"),
    ("<@remote.example:user@example.com>", OUTSIDER, None, True, "local_domain"),
    ("<@remote.example:user@example.com>", "10.66.1.1", None, True, "local_domain"),
    ("<@example.com:user%remote.example@example.com>", OUTSIDER, None, False, "sender_routing"),
]


@pytest.mark.parametrize(("recipient", "client", "user", "allowed", "rule"), SOURCE_ROUTES)
def test_source_route_is_ignored_and_the_mailbox_decides(recipient, client, user, allowed, rule):
    verdict = decide(POLICY, client, PUBLIC_IP, user, recipient, NOW)
    assert (verdict.allowed, verdict.rule) == (allowed, rule)
    assert "source route @" in verdict.detail and "ignored (RFC 5321 C)" in verdict.detail
    if rule == "local_domain":
        assert verdict.route == EXAMPLE_ROUTE


@pytest.mark.parametrize(
    "recipient",
    [
        "",
        "<>",
        "<",
        "bob",
        "bob@",
        "@example.com",
        "bob@@example.com",
        "<bob@example.com",
        "bob@example.com>",
        "<<bob@example.com>>",
        "bo b@example.com",
        "bob@exa mple.com",
        "bob@example..com",
        "bob@example.com..",
        "bob@.example.com",
        "bob@-example.com",
        "bob@example-.com",
        "bob@exam_ple.com",
        "bob@" + "a" * 64 + ".com",
        "bob@" + ("a" * 63 + ".") * 4 + "com",
        "bøb@example.com",
        "bob@bücher.example",
        '"unterminated@example.com',
        '"bob"smith@example.com',
        '"bo\x01b"@example.com',
        "bob@[300.1.1.1]",
        "bob@[010.1.1.1]",
        "bob@[IPv6:zz::1]",
        "bob@[192.0.2.1",
        "bob@[]",
        "bob@[x-tag:opaque]",
        "<@:bob@example.com>",
        "<@example.com bob@example.com>",
        "<@exa_mple.com:bob@example.com>",
        "<@[300.1.1.1]:bob@example.com>",
        "<@example.com:<Postmaster>>",
        "<@example.com:postmaster>",
    ],
)
def test_malformed_recipient(recipient):
    verdict = decide(POLICY, "10.9.9.9", PUBLIC_IP, "alice", recipient, NOW)
    assert (verdict.allowed, verdict.code, verdict.enhanced, verdict.rule) == (False, 501, "5.1.3", "bad_recipient")
    assert verdict.reply.startswith("501 5.1.3 ")


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("bob@example.com", Recipient("bob", "example.com", None)),
        ("<Bob.Smith+tag@Example.COM.>", Recipient("Bob.Smith+tag", "example.com", None)),
        ('"john smith"@example.com', Recipient("john smith", "example.com", None)),
        ('"john\\"q\\"smith"@example.com', Recipient('john"q"smith', "example.com", None)),
        ('""@example.com', Recipient("", "example.com", None)),
        ("bob@[192.0.2.1]", Recipient("bob", "[192.0.2.1]", None)),
        ("bob@[IPv6:2001:db8::1]", Recipient("bob", "[IPv6:2001:db8::1]", None)),
        ("<POSTMASTER>", Recipient("POSTMASTER", None, None)),
        # Dots anywhere in an unquoted local part, as Postfix and Exim accept them.
        (".bob@example.com", Recipient(".bob", "example.com", None)),
        ("bob.@example.com", Recipient("bob.", "example.com", None)),
        ("bob..smith@example.com", Recipient("bob..smith", "example.com", None)),
        (
            "<@[192.0.2.1],@[IPv6:2001:db8::1]:u@example.com>",
            Recipient("u", "example.com", None, "@[192.0.2.1],@[IPv6:2001:db8::1]"),
        ),
        ("user%remote@example.com", Recipient("user%remote", "example.com", "percent hack (%)")),
        ("remote!user@example.com", Recipient("remote!user", "example.com", "bang path (!)")),
        ("user@remote@example.com", Recipient("user@remote", "example.com", "more than one @")),
        (
            '"user@remote"@example.com',
            Recipient("user@remote", "example.com", "quoted local part containing @, % or !"),
        ),
        ("<@a.example,@b.example:user@c.example>", Recipient("user", "c.example", None, "@a.example,@b.example")),
        ("<@a.example:u%v@c.example>", Recipient("u%v", "c.example", "percent hack (%)", "@a.example")),
    ],
)
def test_parse_recipient(path, expected):
    assert parse_recipient(path) == expected


@pytest.mark.parametrize("client", ["", "10.1.2", "example.com", "10.0.0.0/8"])
def test_bad_client_address_is_an_error(client):
    with pytest.raises(ValueError, match="not an IP address"):
        decide(POLICY, client, PUBLIC_IP, None, "bob@example.com", NOW)


def test_now_defaults_to_the_current_time():
    # 10.0.0.0/8 never expires, so the verdict does not depend on today's date.
    verdict = decide(POLICY, "10.9.9.9", PUBLIC_IP, None, "x@remote.example")
    assert verdict.allowed


@pytest.mark.parametrize(
    ("path", "split"),
    [
        ("user@example.com", (None, "user@example.com")),
        ("@a.example:user@example.com", ("@a.example", "user@example.com")),
        ("@[IPv6:2001:db8::1],@b.example:u@c.example", ("@[IPv6:2001:db8::1],@b.example", "u@c.example")),
        ("@a.example", ("@a.example", "")),
    ],
)
def test_split_source_route_ends_at_the_first_colon_outside_an_address_literal(path, split):
    # relayd delivers to the mailbox after the route: it must be the one decide() judged.
    assert split_source_route(path) == split
