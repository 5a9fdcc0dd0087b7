"""The Postfix export, checked by Postfix itself: postmap -q on the tables, postconf on a config directory.

Needs Debian's postfix package (DEBIAN_FRONTEND=noninteractive apt-get install -y postfix); no mail
daemon is started.
"""

import os
import re
import shutil
import subprocess
import time
from itertools import product

import pytest

from policy.export import render, verify
from policy.export.postfix import MAIN_CF, MASTER_CF, MYNETWORKS, NEVER_RELAY, RELAY_DOMAINS, TRANSPORT, nexthop
from relayd.config import compile_policy, validate_snapshot
from relayd.decision import decide
from tests.export import NOW, empty_snapshot, make_snapshot

# Debian 12's stock main.cf, less comments. mynetworks and smtpd_relay_restrictions are among the
# settings the install instructions say to delete before appending the snippet.
BASE_MAIN_CF = """\
smtpd_banner = $myhostname ESMTP $mail_name (Debian/GNU)
biff = no
append_dot_mydomain = no
readme_directory = no
compatibility_level = 3.6
smtpd_relay_restrictions = permit_mynetworks permit_sasl_authenticated defer_unauth_destination
myhostname = relay.example.net
alias_maps = hash:/etc/aliases
alias_database = hash:/etc/aliases
mydestination = $myhostname, localhost
relayhost =
mynetworks = 127.0.0.0/8 [::ffff:127.0.0.0]/104 [::1]/128
mailbox_size_limit = 0
recipient_delimiter = +
inet_interfaces = all
inet_protocols = all
"""

BASE_MASTER_CF = """\
smtp      inet  n       -       y       -       -       smtpd
pickup    unix  n       -       y       60      1       pickup
cleanup   unix  n       -       y       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       y       -       -       trivial-rewrite
smtp      unix  -       -       y       -       -       smtp
relay     unix  -       -       y       -       -       smtp
  -o syslog_name=postfix/$service_name
"""

INSTALL_HINT = "install Debian's postfix: DEBIAN_FRONTEND=noninteractive apt-get install -y postfix"
NEVER_CHECK = "check_client_access cidr:{dir}/relayadmin/never_relay.cidr"
# The denied networks are carved out of mynetworks: a negated pattern that matches ends the search.
MYNETWORKS_SETTING = "!cidr:{dir}/relayadmin/never_relay.cidr, cidr:{dir}/relayadmin/mynetworks.cidr"


def tool(name):
    path = shutil.which(name, path=os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/usr/local/sbin"]))
    if path is None:
        pytest.fail(f"{name} not found: {INSTALL_HINT}")
    return path


def run(*args):
    """Run a Postfix tool; return (exit status, stdout). Any warning on stderr fails the test."""
    result = subprocess.run(args, capture_output=True, text=True, check=False)
    assert result.stderr == "", result.stderr
    return result.returncode, result.stdout


def install(tmp_path, snapshot):
    """Install an export into a fresh config directory the way its instructions say; return the directory."""
    files = render("postfix", snapshot, NOW)
    (tmp_path / "relayadmin").mkdir()
    for name, text in files.items():
        (tmp_path / "relayadmin" / name).write_text(text)
    ours = set(re.findall(r"^(\w+) =", files[MAIN_CF], re.MULTILINE))
    kept = [line for line in BASE_MAIN_CF.splitlines(keepends=True) if line.partition(" =")[0] not in ours]
    (tmp_path / "main.cf").write_text("".join(kept) + "\n" + files[MAIN_CF])
    (tmp_path / "master.cf").write_text(BASE_MASTER_CF + "\n" + files[MASTER_CF])
    # Postfix rereads a file modified in the last two seconds until it is older (dict_load_file
    # guards against a half-written file); backdating the files saves that wait in every test.
    past = time.time() - 60
    for path in [tmp_path / "main.cf", tmp_path / "master.cf", *(tmp_path / "relayadmin").iterdir()]:
        os.utime(path, (past, past))
    return tmp_path


def postmap(config_dir, table, key):
    """Return what Postfix finds for key in one of the exported tables, or None."""
    kind = "cidr" if table.endswith(".cidr") else "texthash"
    status, out = run(tool("postmap"), "-q", key, f"{kind}:{config_dir}/relayadmin/{table}")
    assert status in (0, 1), out
    return out.strip() if status == 0 else None


def postconf(config_dir, *args):
    status, out = run(tool("postconf"), "-c", str(config_dir), *args)
    assert status == 0
    return out


def setting(config_dir, name):
    """Return a main.cf parameter as Postfix evaluates it, $names expanded."""
    return postconf(config_dir, "-h", "-x", name).strip()


def restrictions(value):
    """Split a restriction list into restrictions, keeping a table with the restriction that reads it."""
    tokens = re.split(r"[\s,]+", value.strip())
    items = []
    for token in tokens:
        if ":" in token and items and items[-1].startswith("check_"):
            items[-1] += f" {token}"
        else:
            items.append(token)
    return items


def passes_relay_guard(items):
    """Mirror smtpd's startup check (has_required in smtpd_check.c): a reject_unauth_destination before any permit."""
    for item in items:
        if item == "permit":
            return False
        if item == "reject_unauth_destination":
            return True
    return False


@pytest.fixture
def config_dir(tmp_path):
    return install(tmp_path, make_snapshot())


@pytest.mark.parametrize(
    ("address", "found"),
    [
        ("10.1.2.3", "OK"),
        # Trusted, but denied too: the never_relay check comes before permit_mynetworks.
        ("10.66.1.1", "OK"),
        ("11.0.0.1", None),
        ("2001:db8::1", "OK"),
        ("2001:db9::1", None),
        ("192.0.2.7", None),  # its trusted network expired before the export
        ("127.0.0.1", None),
        ("::1", None),
    ],
)
def test_mynetworks_table_holds_the_unexpired_trusted_networks(config_dir, address, found):
    assert postmap(config_dir, MYNETWORKS, address) == found


@pytest.mark.parametrize(
    ("address", "network"),
    [
        ("10.66.1.1", "10.66.0.0/16"),
        ("10.66.5.9", "10.66.5.0/24"),  # the most specific entry answers
        ("2001:db8:bad::1", "2001:db8:bad::/48"),
        ("10.1.2.3", None),
        ("2001:db8::1", None),
    ],
)
def test_never_relay_table_rejects_denied_networks_with_550_5_7_1(config_dir, address, network):
    expected = f"REJECT 5.7.1 Relaying denied: {network} can never relay" if network else None
    assert postmap(config_dir, NEVER_RELAY, address) == expected
    assert setting(config_dir, "access_map_reject_code") == "550"


def test_cidr_tables_write_ipv6_without_brackets():
    files = render("postfix", make_snapshot(), NOW)
    entries = [line for line in files[MYNETWORKS].splitlines() if line and not line.startswith("#")]
    assert entries == ["10.0.0.0/8\tOK", "2001:db8::/32\tOK"]
    assert "2001:db8:bad::/48\tREJECT" in files[NEVER_RELAY]


@pytest.mark.parametrize(
    ("key", "found"),
    [
        ("example.com", "OK"),
        (".example.com", "OK"),
        ("legacy.example.com", "OK"),
        (".legacy.example.com", "OK"),
        ("v6.example.net", "OK"),
        (".v6.example.net", None),  # this domain does not include its subdomains
        ("xn--bcher-kva.example", "OK"),
        ("example.org", None),
    ],
)
def test_relay_domains_table_lists_subdomains_explicitly(config_dir, key, found):
    assert postmap(config_dir, RELAY_DOMAINS, key) == found


def test_relay_domains_match_only_explicit_subdomains(config_dir):
    # Postfix's default lets "example.com" in relay_domains match its subdomains; the snippet keeps
    # every other feature of the installed Postfix's default.
    default = set(postconf(config_dir, "-d", "-h", "parent_domain_matches_subdomains").replace(",", " ").split())
    ours = set(setting(config_dir, "parent_domain_matches_subdomains").replace(",", " ").split())
    assert ours == default - {"relay_domains"}
    assert setting(config_dir, "relay_domains") == f"texthash:{config_dir}/relayadmin/relay_domains"


@pytest.mark.parametrize(
    ("key", "found"),
    [
        ("example.com", "relay:[mail.internal.example.com]:25"),
        (".example.com", "relay:[mail.internal.example.com]:25"),
        ("legacy.example.com", ":"),
        (".legacy.example.com", ":"),
        ("v6.example.net", "relay:[2001:db8::25]:2525"),
        (".v6.example.net", None),
        ("xn--bcher-kva.example", ":"),
    ],
)
def test_transport_table_routes_to_the_next_hop_without_mx_lookup(config_dir, key, found):
    assert postmap(config_dir, TRANSPORT, key) == found
    assert setting(config_dir, "transport_maps") == f"texthash:{config_dir}/relayadmin/transport"


@pytest.mark.parametrize(
    "domain",
    [
        "example.com",
        "mx.example.com",
        "legacy.example.com",
        "old.legacy.example.com",
        "v6.example.net",
        "sub.v6.example.net",
        "xn--bcher-kva.example",
        "example.org",
    ],
)
def test_relay_domains_and_transport_agree_with_relayd(config_dir, domain):
    policy = compile_policy(validate_snapshot(make_snapshot()))
    verdict = decide(policy, "198.51.100.7", None, None, f"user@{domain}", now=NOW)
    # Postfix's search order in both tables: the domain, then each parent domain with a leading
    # dot (match_hostname in match_ops.c and transport(5), parent_domain_matches_subdomains off).
    parents = [f".{domain.split('.', depth)[-1]}" for depth in range(1, domain.count(".") + 1)]
    local = any(postmap(config_dir, RELAY_DOMAINS, key) for key in [domain, *parents])
    hop = next(filter(None, (postmap(config_dir, TRANSPORT, key) for key in [domain, *parents])), None)
    assert local == (verdict.rule == "local_domain")
    assert (None if hop in (None, ":") else hop) == (nexthop(verdict.route) if verdict.route else None)


def test_main_cf_snippet_parses_and_sets_the_policy(config_dir):
    postconf(config_dir, "-n")  # any warning (unknown or duplicate parameter) fails
    assert setting(config_dir, "mynetworks") == MYNETWORKS_SETTING.format(dir=config_dir)
    assert setting(config_dir, "smtpd_sasl_auth_enable") == "yes"
    assert setting(config_dir, "smtpd_tls_auth_only") == "yes"
    assert setting(config_dir, "allow_untrusted_routing") == "no"
    assert setting(config_dir, "relay_domains_reject_code") == "550"
    assert restrictions(setting(config_dir, "smtpd_relay_restrictions")) == [
        "permit_auth_destination",
        NEVER_CHECK.format(dir=config_dir),
        "permit_mynetworks",
        "permit_sasl_authenticated",
        "reject_unauth_destination",
    ]


@pytest.mark.parametrize("listed_ips", [True, False])
def test_defaults_that_favour_mynetworks_follow_the_carved_out_mynetworks(tmp_path, listed_ips):
    config_dir = install(tmp_path, make_snapshot(listed_ips=listed_ips))
    postconf(config_dir, "-n")
    expected = MYNETWORKS_SETTING.format(dir=config_dir) if listed_ips else ""
    assert setting(config_dir, "mynetworks") == expected
    assert setting(config_dir, "postscreen_access_list") == "permit_mynetworks"
    assert setting(config_dir, "smtpd_client_event_limit_exceptions") == expected
    # Every other default that names $mynetworks (postconf -d) now means the carved-out list too.
    for line in postconf(config_dir, "-d").splitlines():
        name, _, default = line.partition(" = ")
        if "$mynetworks" in default and name != "proxy_read_maps":
            assert "$mynetworks" in postconf(config_dir, "-h", name), name


@pytest.mark.parametrize(("listed_ips", "authenticated", "internal"), list(product([True, False], repeat=3)))
def test_relay_restrictions_reproduce_the_three_checkboxes(tmp_path, listed_ips, authenticated, internal):
    config_dir = install(tmp_path, make_snapshot(listed_ips, authenticated, internal))
    postconf(config_dir, "-n")
    relay = restrictions(setting(config_dir, "smtpd_relay_restrictions"))
    assert relay[:2] == ["permit_auth_destination", NEVER_CHECK.format(dir=config_dir)]
    assert ("permit_mynetworks" in relay) == listed_ips
    assert ("permit_sasl_authenticated" in relay) == authenticated
    assert relay[-1] == "reject_unauth_destination"
    assert passes_relay_guard(relay)
    assert setting(config_dir, "smtpd_sasl_auth_enable") == ("yes" if authenticated else "no")
    listeners = [line.split()[0] for line in postconf(config_dir, "-M").splitlines() if "inet" in line.split()[:2]]
    assert listeners == (["smtp", "192.168.1.10:smtp", "[2001:db8:1::10]:smtp"] if internal else ["smtp"])


def test_internal_address_listeners_let_every_client_but_denied_ones_relay(config_dir):
    for service in ("192.168.1.10:smtp", "[2001:db8:1::10]:smtp"):
        value = postconf(config_dir, "-h", "-P", "-x", f"{service}/inet/smtpd_relay_restrictions")
        relay = restrictions(value)
        assert relay == [
            "permit_auth_destination",
            NEVER_CHECK.format(dir=config_dir),
            "check_client_access static:OK",
            "reject_unauth_destination",
        ]
        # smtpd would refuse to start with a bare "permit"; static:OK permits every client all the same.
        assert passes_relay_guard(relay)
    assert postmap(config_dir, NEVER_RELAY, "10.66.1.1").startswith("REJECT")
    assert run(tool("postmap"), "-q", "198.51.100.7", "static:OK") == (0, "OK\n")


@pytest.mark.parametrize(("listed_ips", "authenticated", "internal"), list(product([True, False], repeat=3)))
def test_an_empty_policy_is_never_an_open_relay(tmp_path, listed_ips, authenticated, internal):
    config_dir = install(tmp_path, empty_snapshot(listed_ips, authenticated, internal))
    postconf(config_dir, "-n")
    # mynetworks is our (empty) table, or empty, never mynetworks_style's guess of the local subnets.
    assert setting(config_dir, "mynetworks") == (MYNETWORKS_SETTING.format(dir=config_dir) if listed_ips else "")
    for address in ("127.0.0.1", "::1", "10.0.0.1", "192.168.0.1", "198.51.100.7", "2001:db8::1"):
        assert postmap(config_dir, MYNETWORKS, address) is None
    assert postmap(config_dir, RELAY_DOMAINS, "example.com") is None
    relay = restrictions(setting(config_dir, "smtpd_relay_restrictions"))
    assert "permit" not in relay
    assert relay[-1] == "reject_unauth_destination"
    assert passes_relay_guard(relay)
    assert [line.split()[0] for line in postconf(config_dir, "-M").splitlines()] == [
        line.split()[0] for line in BASE_MASTER_CF.splitlines() if not line.startswith(" ")
    ]


def test_every_postfix_file_carries_a_verifiable_header():
    for name, text in render("postfix", make_snapshot(), NOW).items():
        assert text.startswith(f"# Generated by relayadmin (Postfix export): {name}. DO NOT EDIT.\n")
        assert "# Policy serial 7, snapshot of 2026-11-28T11:59:00+00:00, exported 2026-11-28T12:00:00+00:00." in text
        assert "# Export again before 2026-12-01T12:00:00+00:00" in text
        assert verify(text)
