"""The Exim export: its structure always, and Exim's own verdicts (exim -bh, -bt) when Exim is installed.

Debian's exim4 packages conflict with postfix, which the Postfix tests need, so `make test` unpacks
Exim into .cache/exim instead of installing it (tools/exim-for-tests.sh).
-bh runs a fake SMTP session through the ACLs and -bt shows the routing: neither starts a daemon.
"""

import re
from itertools import product

import pytest

from policy.export import render, verify
from policy.export.exim import ACL, MAIN, ROUTER, route_host
from relayd.config import compile_policy, validate_snapshot
from relayd.decision import decide
from tests.export import NOW, empty_snapshot, make_snapshot
from tests.export.exim_harness import exim, install, needs_exim, rcpt_replies

# Clients and recipients for the verdict table; local addresses are the address the client connected to.
CLIENTS = ["198.51.100.7", "10.1.2.3", "10.66.1.1", "10.66.5.9", "2001:db8::9", "2001:db8:bad::9", "192.0.2.7"]
LOCAL_ADDRESSES = [None, "192.168.1.10", "2001:db8:1::10", "203.0.113.1"]
RECIPIENTS = [
    "user@example.com",
    "user@mx.example.com",
    "user@legacy.example.com",
    "user@xn--bcher-kva.example",
    "user@remote.example.org",
    "user%remote.example.org@example.com",
    "remote.example.org!user@example.com",
    '"user@remote.example.org"@example.com',
]


def logical_lines(text):
    """Return an Exim file's logical lines: comments dropped, backslash continuations joined."""
    lines, pending = [], ""
    for line in text.splitlines():
        if line.lstrip().startswith("#") or not line.strip():
            continue
        pending += line.strip() if pending else line
        if pending.endswith("\\"):
            pending = pending[:-1]
        else:
            lines.append(pending)
            pending = ""
    return lines


def named_lists(text):
    """Return {name: items} of the hostlist and domainlist definitions, splitting on each list's separator."""
    lists = {}
    for line in logical_lines(text):
        match = re.fullmatch(r"(?:hostlist|domainlist) (\w+) =\s*(.*)", line)
        if match:
            value = match[2]
            separator = ":"
            if value.startswith("<"):
                separator, value = value[1], value[2:]
            lists[match[1]] = [item.strip() for item in value.split(separator) if item.strip()]
    return lists


def statements(acl_text, name):
    """Return the statements of one ACL, each as its verb and conditions on one line."""
    body = acl_text.split(f"\n{name}:\n", 1)[1].split("\n\n", 1)[0]
    result = []
    for line in logical_lines(body):
        if line.startswith("  ") and not line.startswith("   "):
            result.append(" ".join(line.split()))
        else:
            result[-1] += " " + " ".join(line.split())
    return result


def test_host_lists_use_semicolons_so_ipv6_needs_no_escaping():
    files = render("exim", make_snapshot(), NOW)
    assert "hostlist relay_from_hosts = <; \\\n    10.0.0.0/8 ; \\\n    2001:db8::/32\n" in files[MAIN]
    assert named_lists(files[MAIN]) == {
        # 192.0.2.0/24 expired before the export.
        "relay_from_hosts": ["10.0.0.0/8", "2001:db8::/32"],
        "relayadmin_never_relay_hosts": ["10.66.5.0/24", "10.66.0.0/16", "2001:db8:bad::/48"],
        "relayadmin_internal_addresses": ["192.168.1.10", "2001:db8:1::10"],
        "relay_to_domains": [
            "legacy.example.com",
            "*.legacy.example.com",
            "v6.example.net",
            "example.com",
            "*.example.com",
            "xn--bcher-kva.example",
        ],
        "relayadmin_host_domains": ["@", "localhost", "@[]"],
    }


def test_empty_lists_are_defined_and_empty():
    lines = logical_lines(render("exim", empty_snapshot(), NOW)[MAIN])
    assert "hostlist relay_from_hosts = <;" in lines
    assert "hostlist relayadmin_never_relay_hosts = <;" in lines
    assert "domainlist relay_to_domains =" in lines


@pytest.mark.parametrize("snapshot", [make_snapshot, empty_snapshot])
def test_the_acl_uses_only_lists_the_export_defines(snapshot):
    files = render("exim", snapshot(), NOW)
    used = {name for line in logical_lines(files[ACL]) for name in re.findall(r"\+(\w+)", line)}
    assert "relayadmin_host_domains" in used and "local_domains" not in used
    assert used <= set(named_lists(files[MAIN]))


def test_recipients_are_parsed_as_relayd_parses_them():
    lines = logical_lines(render("exim", make_snapshot(), NOW)[MAIN])
    assert "strip_trailing_dot = true" in lines
    assert "allow_domain_literals = true" in lines


def test_auth_is_offered_only_after_starttls():
    assert "auth_advertise_hosts = ${if eq{$tls_in_cipher}{}{}{*}}" in logical_lines(
        render("exim", make_snapshot(), NOW)[MAIN]
    )


@pytest.mark.parametrize(("listed_ips", "authenticated", "internal"), list(product([True, False], repeat=3)))
def test_acl_reproduces_the_three_checkboxes(listed_ips, authenticated, internal):
    acl = render("exim", make_snapshot(listed_ips, authenticated, internal), NOW)[ACL]
    may_relay = statements(acl, "relayadmin_may_relay")
    # The denied networks come first: they never relay, whatever else holds.
    assert may_relay[0] == "deny hosts = +relayadmin_never_relay_hosts"
    assert may_relay[-1] == "deny"
    assert ("accept hosts = +relay_from_hosts" in may_relay) == listed_ips
    assert ("accept authenticated = *" in may_relay) == authenticated
    assert (
        "accept condition = ${if match_ip{$interface_address}{+relayadmin_internal_addresses}}" in may_relay
    ) == internal
    assert statements(acl, "relayadmin_check_rcpt") == [
        "deny message = 550 5.7.1 Sender-specified routing denied local_parts = ^.*[@%!] !acl = relayadmin_may_relay",
        "accept domains = +relayadmin_host_domains : +relay_to_domains",
        "deny message = 550 5.7.1 Relaying denied: your network can never relay hosts = +relayadmin_never_relay_hosts",
        "accept acl = relayadmin_may_relay",
        "deny message = 550 5.7.1 Relaying denied",
    ]


@pytest.mark.parametrize(
    ("route", "host"),
    [
        ("mail.internal.example.com:25", "mail.internal.example.com::25"),
        ("192.0.2.25:26", "192.0.2.25::26"),
        ("[2001:db8::25]:2525", "[2001::db8::::25]::2525"),
    ],
)
def test_route_hosts_double_their_colons_in_a_colon_separated_host_list(route, host):
    assert route_host(route) == host


def test_router_routes_the_most_specific_entry_and_leaves_unrouted_domains_alone():
    lines = logical_lines(render("exim", make_snapshot(), NOW)[ROUTER])
    assert lines == [
        "relayadmin_routes:",
        "  driver     = manualroute",
        "  transport  = remote_smtp",
        "  domains    = ! legacy.example.com : ! *.legacy.example.com : v6.example.net : example.com : "
        "*.example.com : ! xn--bcher-kva.example",
        "  route_list = v6.example.net [2001::db8::::25]::2525 ; example.com mail.internal.example.com::25 ; "
        "*.example.com mail.internal.example.com::25",
        "  no_more",
    ]


def test_no_router_without_routes():
    assert logical_lines(render("exim", empty_snapshot(), NOW)[ROUTER]) == []


def test_every_exim_file_carries_a_verifiable_header():
    for name, text in render("exim", make_snapshot(), NOW).items():
        assert text.startswith(f"# Generated by relayadmin (Exim export): {name}. DO NOT EDIT.\n")
        assert verify(text)


@needs_exim
@pytest.mark.parametrize(("listed_ips", "authenticated", "internal"), list(product([True, False], repeat=3)))
def test_exim_accepts_the_configuration(tmp_path, listed_ips, authenticated, internal):
    for index, snapshot in enumerate([make_snapshot, empty_snapshot]):
        directory = tmp_path / str(index)
        directory.mkdir()
        config = install(directory, snapshot(listed_ips, authenticated, internal))
        status, output = exim(config, "-bV")
        assert status == 0, output


@needs_exim
@pytest.mark.parametrize(("listed_ips", "internal"), list(product([True, False], repeat=2)))
def test_exim_decides_every_recipient_as_relayd_does(tmp_path, listed_ips, internal):
    snapshot = make_snapshot(listed_ips, False, internal)
    config = install(tmp_path, snapshot)
    policy = compile_policy(validate_snapshot(snapshot))
    for client, local in product(CLIENTS, LOCAL_ADDRESSES):
        replies = rcpt_replies(config, client, local, RECIPIENTS)
        expected = [250 if decide(policy, client, local, None, rcpt, now=NOW).allowed else 550 for rcpt in RECIPIENTS]
        assert replies == expected, (client, local)


@needs_exim
def test_exim_never_relays_for_anyone_with_an_empty_policy(tmp_path):
    config = install(tmp_path, empty_snapshot())
    for client, local in product(["127.0.0.1", "::1", "10.0.0.1", "198.51.100.7"], [None, "127.0.0.1"]):
        assert rcpt_replies(config, client, local, ["user@remote.example.org", "postmaster@relay.example.net"]) == [
            550,
            250,
        ]


@needs_exim
@pytest.mark.parametrize("domain", ["example.com", "mx.example.com", "legacy.example.com", "v6.example.net"])
def test_exim_routes_to_the_next_hop_relayd_reports(tmp_path, domain):
    # IP addresses as next hops, so that routing needs no DNS.
    domains = [
        {"domain": "example.com", "include_subdomains": True, "route": "192.0.2.25:25"},
        {"domain": "legacy.example.com", "include_subdomains": True, "route": None},
        {"domain": "v6.example.net", "include_subdomains": False, "route": "[2001:db8::25]:2525"},
    ]
    snapshot = make_snapshot(local_domains=domains)
    route = decide(compile_policy(validate_snapshot(snapshot)), "10.1.2.3", None, None, f"user@{domain}", now=NOW).route
    _, output = exim(install(tmp_path, snapshot), "-bt", f"user@{domain}")
    if route is None:
        # The harness has no other router: a domain without a route of its own is not ours to route.
        assert "Unrouteable address" in output
    else:
        host, _, port = route.rpartition(":")
        assert "router = relayadmin_routes, transport = remote_smtp" in output
        assert f"[{host.strip('[]')}] port={port}" in output
