"""Differential test: relayd's decide(), a private Postfix and Exim, each on the same export, give the same verdicts.

A few hundred generated cases (clients inside and outside the trusted and denied networks, some
connecting to an internal address; local, remote and tricky recipients) go to decide(), to a
real Postfix master running the Postfix export (XCLIENT names the client), and to
`exim -bh CLIENT` running the Exim export. No MTA may accept mail to a non-local domain from a
client that the policy does not let relay. Every other difference from decide() must be one of
the classes in docs/verdicts.md: the MTA's own host name, a difference the tester announces
(policy.export.differences), or an MTA's lenient reading of a path relayd refuses as malformed.
The counts are printed in every run, for the closing note.
"""

from __future__ import annotations

import ipaddress
import random
import shutil
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from policy.export.differences import export_differences
from relayd.config import compile_policy, validate_snapshot
from relayd.decision import decide
from tests.export import NOW, make_snapshot
from tests.export.exim_harness import EXIM, install, rcpt_answers
from tests.export.postfix_harness import HOSTNAME, PrivatePostfix

SEED = 20261128
CLIENTS_PER_POLICY = 40
RECIPIENTS_PER_CLIENT = 8

# Where generated clients come from, by what the sample snapshot says of them.
CLIENT_POOLS = {
    "trusted": ["10.0.0.0/8", "2001:db8::/32"],
    "denied": ["10.66.0.0/16", "10.66.5.0/24", "2001:db8:bad::/48"],
    "expired trust": ["192.0.2.0/24"],
    "outside": ["198.51.100.0/24", "203.0.113.0/24", "172.16.0.0/12", "2001:db9::/32", "127.0.0.0/8"],
    # IPv4-mapped IPv6, as a dual-stack listener sees IPv4 clients: relayd reads them as IPv4.
    "mapped": ["::ffff:10.0.0.0/104", "::ffff:10.66.0.0/112", "::ffff:198.51.100.0/120"],
}

LOCAL_DOMAINS = ["example.com", "mx.example.com", "Example.COM", "legacy.example.com", "old.legacy.example.com"]
LOCAL_DOMAINS += ["v6.example.net", "xn--bcher-kva.example"]
REMOTE_DOMAINS = ["remote.example.org", "sub.v6.example.net", "example.com.evil.test", "evil-example.com"]
REMOTE_LITERALS = ["[192.0.2.99]", "[IPv6:2001:db8:ffff::1]"]
# The MTA's own names (Postfix's mydestination, Exim's relayadmin_host_domains), and its address.
HOST_DOMAINS = [HOSTNAME, "localhost", "[127.0.0.1]"]


# An internal address on loopback, so that a private Postfix can listen on it.
INTERNAL = "127.0.0.2"


@dataclass(frozen=True)
class Case:
    client: str
    local: str | None  # the internal address the client connected to, or None for the main listener
    recipient: str
    kind: str  # what the recipient is: local, remote, host (the MTA's own names) or syntax


def recipient_forms(rng: random.Random) -> tuple[str, str]:
    """Return one generated recipient and its kind."""
    local, remote, host = rng.choice(LOCAL_DOMAINS), rng.choice(REMOTE_DOMAINS), rng.choice(HOST_DOMAINS)
    user = rng.choice(["user", "Bob.Smith+tag", "postmaster", "root"])
    forms = [
        (f"{user}@{local}", "local"),
        (f"{user}@{local}.", "local"),
        (f'"john smith"@{local}', "local"),
        (f"@{remote}:{user}@{local}", "local"),
        (f"@{remote},@{local}:{user}@{local}", "local"),
        (f"{user}%{remote}@{local}", "local"),
        (f"{remote}!{user}@{local}", "local"),
        (f'"{user}@{remote}"@{local}', "local"),
        (f'"{user}%{remote}"@{local}', "local"),
        (f"{user}@{remote}@{local}", "local"),
        (f'""@{local}', "local"),
        (f".{user}..x.@{local}", "local"),
        (f"@-{remote}:{user}@{local}", "local"),
        (f"{user}@{remote}", "remote"),
        (f"{user}@{remote}.", "remote"),
        (f"{user}@{remote.upper()}", "remote"),
        (f"@{local}:{user}@{remote}", "remote"),
        (f"@{host}:{user}@{remote}", "remote"),
        (f"{user}%{local}@{remote}", "remote"),
        (f"{user}@{local}@{remote}", "remote"),
        (f'"{user}@{local}"@{remote}', "remote"),
        (f"{user}@{rng.choice(REMOTE_LITERALS)}", "remote"),
        (f"@[192.0.2.1],@[IPv6:2001:db8::1]:{user}@{remote}", "remote"),
        (f"@-{local}:{user}@{remote}", "remote"),
        (f'""@{remote}', "remote"),
        (f"{user}.@{remote}", "remote"),
        (f"{user}@{host}", "host"),
        (f"{user}%{remote}@{host}", "host"),
        ("postmaster", "host"),
        (f"{user}@[x-tag:{remote}]", "syntax"),
        (f"{user}@{remote}..", "syntax"),
        (f"{user}@-{remote}", "syntax"),
        (f"{user}@{remote}>", "syntax"),
        (f"{user} x@{remote}", "syntax"),
    ]
    return rng.choice(forms)


def random_client(rng: random.Random) -> str:
    pool = rng.choice(list(CLIENT_POOLS))
    network = ipaddress.ip_network(rng.choice(CLIENT_POOLS[pool]))
    return str(network[rng.randrange(1, min(network.num_addresses, 2**32) - 1)])


def generate(seed: int) -> list[Case]:
    rng = random.Random(seed)
    cases = []
    for _ in range(CLIENTS_PER_POLICY):
        client, local = random_client(rng), rng.choice([None, None, INTERNAL])
        for _ in range(RECIPIENTS_PER_CLIENT):
            recipient, kind = recipient_forms(rng)
            cases.append(Case(client, local, recipient, kind))
    return cases


def accepted(answer: str) -> bool:
    return answer.startswith("250")


def sessions(cases: list[Case]) -> dict[tuple[str, str | None], list[Case]]:
    """Group cases by client and local address: one SMTP session each."""
    grouped: dict[tuple[str, str | None], list[Case]] = {}
    for case in cases:
        grouped.setdefault((case.client, case.local), []).append(case)
    return grouped


@pytest.fixture(scope="module")
def exim_binary():
    if EXIM is None:
        pytest.fail("Exim is missing: run tools/exim-for-tests.sh (make test does)")
    return EXIM


@pytest.fixture(scope="module")
def postfix_tools():
    if shutil.which("postfix", path="/usr/sbin:/usr/bin") is None:
        pytest.fail("postfix is missing: DEBIAN_FRONTEND=noninteractive apt-get install -y postfix (make test does)")


MYNETWORKS_PROBES = {
    "10.1.2.3": True,  # trusted
    "10.66.1.1": False,  # denied, inside the trusted 10.0.0.0/8
    "10.66.5.9": False,
    "::ffff:10.66.1.1": False,
    "2001:db8::1": True,
    "2001:db8:bad::1": False,  # denied, inside the trusted 2001:db8::/32
    "192.0.2.7": False,  # its trust expired before the export
    "198.51.100.7": False,
    "127.0.0.1": False,  # not even localhost, unless a trusted network says so
}


@pytest.mark.parametrize("listed_ips", [True, False], ids=["these-addresses-on", "these-addresses-off"])
def test_postfix_mynetworks_holds_trusted_networks_less_denied_ones_and_is_empty_when_off(postfix_tools, listed_ips):
    with PrivatePostfix(make_snapshot(listed_ips, False, False)) as postfix:
        found = {client: postfix.in_mynetworks(client) for client in MYNETWORKS_PROBES}
    assert found == {client: listed_ips and trusted for client, trusted in MYNETWORKS_PROBES.items()}


@pytest.mark.parametrize(
    ("listed_ips", "authenticated", "internal"),
    [(True, False, True), (False, True, False)],
    ids=["these-addresses-and-internal-on", "these-addresses-and-internal-off"],
)
def test_relayd_postfix_and_exim_agree_on_relaying(
    tmp_path, capsys, exim_binary, postfix_tools, listed_ips, authenticated, internal
):
    internal_addresses = [{"id": 1, "address": INTERNAL, "description": "loopback alias"}]
    snapshot = make_snapshot(listed_ips, authenticated, internal, internal_addresses=internal_addresses)
    policy = compile_policy(validate_snapshot(snapshot))
    cases = generate(SEED + listed_ips)
    config = install(tmp_path, snapshot, "smtp_max_synprot_errors = 10000")

    answers: dict[str, dict[Case, str]] = {"postfix": {}, "exim": {}}
    with PrivatePostfix(snapshot) as postfix:
        for (client, local), group in sessions(cases).items():
            recipients = [case.recipient for case in group]
            # With the checkbox off there is no internal listener: the main one stands for it.
            listener = local if local in postfix.internal_ports else None
            replies = postfix.rcpt_answers(client, recipients, local=listener)
            answers["postfix"].update(zip(group, replies, strict=True))
            answers["exim"].update(zip(group, rcpt_answers(config, client, local, recipients), strict=True))

    def accepts(case: Case) -> Callable[[str], bool]:
        return lambda path: decide(policy, case.client, case.local, None, path, now=NOW).allowed

    counts: Counter[str] = Counter()
    unexplained, beyond_policy = [], []
    for case in cases:
        verdict = decide(policy, case.client, case.local, None, case.recipient, now=NOW)
        may_relay = accepts(case)("probe@remote.example.org")
        counts[f"{case.kind} cases"] += 1
        for target, mta in answers.items():
            answer = mta[case]
            if case.kind in ("remote", "syntax") and accepted(answer) and not may_relay:
                beyond_policy.append((target, case, answer))
            if accepted(answer) == verdict.allowed:
                counts[f"{target}: agrees"] += 1
                continue
            if case.kind == "host":
                # The MTA's own host: Postfix and Exim deliver to their own users there (or refuse
                # unknown ones, 550 5.1.1); relayd has no mailboxes. Local delivery, not relaying.
                why = "own host name"
            elif export_differences(target, case.recipient, accepts(case)):
                why = "announced by the tester"
            elif case.kind == "syntax" and accepted(answer):
                # The MTA reads a path relayd refuses as malformed (501) into some address; that it
                # does so only for clients that may relay is checked above (beyond_policy).
                why = "lenient parsing of a malformed path"
            else:
                unexplained.append((target, case, verdict.reply, verdict.rule, answer))
                why = "UNEXPLAINED"
            counts[f"{target}: differs on a {case.kind} recipient, {why}"] += 1

    # Shown in every run, not only on failure: the closing note quotes these counts.
    with capsys.disabled():
        state = "on" if listed_ips else "off"
        print(f"\ndifferential, these addresses and internal addresses {state}: {len(cases)} cases")
        for key, count in sorted(counts.items()):
            print(f"  {key}: {count}")
        print(f"  accepted for a non-local domain from a client that may not relay: {len(beyond_policy)}")
        for target, case, reply, rule, answer in unexplained:
            print(f"  UNEXPLAINED {target}: {case}: {answer!r}; relayd {reply} ({rule})")
    # No MTA accepts mail to a non-local domain from a client that the policy does not let relay,
    # and every other difference from relayd is a documented class the tester announces.
    assert beyond_policy == []
    assert unexplained == []
