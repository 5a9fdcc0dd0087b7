"""Snapshot loading, validation of every field, compilation and password hashes; plain pytest, no Django."""

import copy
import dataclasses
import json
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from relayd.config import (
    AuditAnchor,
    CompiledPolicy,
    SmtpUser,
    SnapshotError,
    compile_policy,
    load_snapshot,
    parse_snapshot,
    validate_snapshot,
)
from relayd.matcher import Address, NetworkSet, parse_address
from relayd.passwords import verify_password
from tests.snapshots import network, snapshot

# Made by Django 5.2's PBKDF2PasswordHasher, so the reader is checked against the real writer.
ALICE_HASH = "pbkdf2_sha256$1000$NaClNaClNaClNaCl$nZQjQjg4q0dZ/pBo6BL7fH3xyVgqXnGIhmjBlaahFNw="  # "correct horse"
BOB_HASH = "pbkdf2_sha256$1200$x7Yq$ahHs5EErDxdUUE0p/cU12tJwZrNVGB7KkfjsMh+AFbs="  # "pässwörd"

VALID = snapshot(
    7,
    authenticated=True,
    listed_ips=True,
    trusted_networks=[
        network(3, "10.0.0.0/8", "LAN"),
        # Other spellings of a timestamp relayd reads, and no added_by.
        {
            **network(4, "2001:db8:10::/48", expires_at="2026-12-01T00:00:00Z"),
            "added_by": "",
            "added_at": "2026-11-28T01:00:00.123456+01:00",
        },
    ],
    denied_networks=[network(1, "10.66.0.0/16", "guest Wi-Fi", denied=True)],
    internal_addresses=[
        {"id": 1, "address": "192.168.1.10", "description": "LAN interface"},
        {"id": 2, "address": "2001:db8::25", "description": ""},
    ],
    local_domains=[
        {"domain": "example.com", "include_subdomains": True, "route": "mail.internal.example.com:25"},
        {"domain": "xn--bcher-kva.example", "include_subdomains": False, "route": None},
        {"domain": "v6.example", "include_subdomains": False, "route": "[2001:db8::25]:2525"},
        {"domain": "v4.example", "include_subdomains": False, "route": "192.0.2.25:25"},
    ],
    smtp_users=[
        {"username": "alice", "password_hash": ALICE_HASH},
        {"username": "bob", "password_hash": BOB_HASH},
    ],
    audit={"count": 12, "head": "ab" * 32},
)


DELETE = object()


def mutated(path, value):
    """Return a copy of VALID with the value at path (keys and indexes) replaced, or deleted if value is DELETE."""
    document = copy.deepcopy(VALID)
    *parents, last = path
    target = document
    for key in parents:
        target = target[key]
    if value is DELETE:
        del target[last]
    else:
        target[last] = value
    return document


def test_valid_snapshot_loads():
    snapshot = validate_snapshot(copy.deepcopy(VALID))
    assert (snapshot.schema, snapshot.serial) == (1, 7)
    assert snapshot.generated_at == datetime(2026, 11, 28, 0, 40, tzinfo=UTC)
    assert snapshot.restrictions.allow_authenticated is True
    assert snapshot.restrictions.allow_internal_addresses is False
    lan, v6 = snapshot.trusted_networks
    assert (lan.id, str(lan.network), lan.description, lan.expires_at, lan.added_by) == (
        3,
        "10.0.0.0/8",
        "LAN",
        None,
        "alice",
    )
    assert v6.expires_at == datetime(2026, 12, 1, tzinfo=UTC)
    assert v6.added_at == datetime(2026, 11, 28, 0, 0, 0, 123456, tzinfo=UTC)
    assert snapshot.denied_networks[0].network.prefixlen == 16
    assert snapshot.internal_addresses[1].address == parse_address("2001:db8::25")
    assert [domain.route for domain in snapshot.local_domains] == [
        "mail.internal.example.com:25",
        None,
        "[2001:db8::25]:2525",
        "192.0.2.25:25",
    ]
    assert snapshot.smtp_users[0] == SmtpUser("alice", ALICE_HASH)
    assert snapshot.audit == AuditAnchor(12, "ab" * 32)


def test_the_audit_anchor_is_optional():
    # Snapshots published before anchors existed must still load.
    assert validate_snapshot(mutated(("audit",), DELETE)).audit is None


def test_empty_lists_are_valid():
    document = copy.deepcopy(VALID)
    for key in ("trusted_networks", "denied_networks", "internal_addresses", "local_domains", "smtp_users"):
        document[key] = []
    snapshot = validate_snapshot(document)
    assert snapshot.trusted_networks == snapshot.smtp_users == ()


def test_snapshot_is_immutable():
    snapshot = validate_snapshot(copy.deepcopy(VALID))
    with pytest.raises(dataclasses.FrozenInstanceError):
        snapshot.serial = 8
    with pytest.raises(AttributeError):
        snapshot.trusted_networks[0].network = "0.0.0.0/0"
    assert isinstance(snapshot.trusted_networks, tuple)


def test_smtp_user_repr_hides_the_hash():
    assert "NaCl" not in repr(validate_snapshot(copy.deepcopy(VALID)).smtp_users[0])


def test_load_snapshot_reads_a_file(tmp_path):
    path = tmp_path / "policy.json"
    path.write_text(json.dumps(VALID))
    assert load_snapshot(path).serial == 7
    assert load_snapshot(str(path)).serial == 7


def test_load_snapshot_refuses_a_missing_file(tmp_path):
    with pytest.raises(SnapshotError, match="cannot read the snapshot"):
        load_snapshot(tmp_path / "absent.json")


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (b"", "snapshot: not valid JSON"),
        (b"{", "snapshot: not valid JSON"),
        (b"\xff\xfe{}", "snapshot: not valid JSON"),
        (json.dumps(VALID).replace('"serial": 7', '"serial": NaN'), "snapshot: not valid JSON: unexpected character"),
        (json.dumps(VALID).replace('"serial": 7', '"serial": Infinity'), "snapshot: not valid JSON: unexpected char"),
        (json.dumps(VALID) + " {}", "snapshot: not valid JSON: unexpected content after document"),
        # orjson reads integers beyond 64 bits as floats, which are refused like any non-integer.
        (json.dumps(VALID).replace('"serial": 7', f'"serial": {2**64}'), "serial: must be a positive integer"),
        (b"[]", "snapshot: must be a JSON object"),
        (b"null", "snapshot: must be a JSON object"),
    ],
)
def test_parse_snapshot_refuses_bad_json(data, problem):
    with pytest.raises(SnapshotError) as caught:
        parse_snapshot(data)
    assert str(caught.value).startswith(problem)


def test_parse_snapshot_accepts_text_and_bytes():
    assert parse_snapshot(json.dumps(VALID)).serial == parse_snapshot(json.dumps(VALID).encode()).serial == 7


ERRORS = [
    # The document and its schema.
    (("schema",), DELETE, "schema", "missing"),
    (("schema",), 4, "schema", "unsupported schema 4: this relayd understands schemas 1, 2 and 3"),
    (("profiles",), {"trusted_networks": [], "smtp_users": []}, "profiles", "unknown key"),
    (("schema",), "1", "schema", "unsupported schema"),
    (("schema",), True, "schema", "unsupported schema"),
    (("colour",), "blue", "colour", "unknown key"),
    (("serial",), DELETE, "serial", "missing"),
    (("serial",), 0, "serial", "must be a positive integer"),
    (("serial",), -3, "serial", "must be a positive integer"),
    (("serial",), "7", "serial", "must be a positive integer"),
    (("serial",), 7.0, "serial", "must be a positive integer"),
    (("serial",), True, "serial", "must be a positive integer"),
    (("generated_at",), None, "generated_at", "must be an ISO 8601 timestamp string"),
    (("generated_at",), "2026-11-28T00:40:00", "generated_at", "has no UTC offset"),
    (("generated_at",), "2026-11-28", "generated_at", "has no UTC offset"),
    (("generated_at",), "yesterday", "generated_at", "is not an ISO 8601 timestamp"),
    # The audit anchor: optional, but exact when present.
    (("audit",), [], "audit", "must be a JSON object"),
    (("audit", "head"), DELETE, "audit.head", "missing"),
    (("audit", "serial"), 3, "audit.serial", "unknown key"),
    (("audit", "count"), -1, "audit.count", "must be a non-negative integer"),
    (("audit", "count"), True, "audit.count", "must be a non-negative integer"),
    (("audit", "head"), "AB" * 32, "audit.head", "must be 64 lowercase hexadecimal digits"),
    (("audit", "head"), "ab" * 31, "audit.head", "must be 64 lowercase hexadecimal digits"),
    # Restrictions: exactly the three booleans.
    (("restrictions",), [], "restrictions", "must be a JSON object"),
    (("restrictions", "allow_listed_ips"), DELETE, "restrictions.allow_listed_ips", "missing"),
    (("restrictions", "allow_everyone"), True, "restrictions.allow_everyone", "unknown key"),
    (("restrictions", "allow_authenticated"), 1, "restrictions.allow_authenticated", "must be true or false"),
    (("restrictions", "allow_internal_addresses"), None, "restrictions.allow_internal_addresses", "true or false"),
    (("restrictions", "allow_listed_ips"), "true", "restrictions.allow_listed_ips", "must be true or false"),
    # Trusted networks.
    (("trusted_networks",), None, "trusted_networks", "must be a list"),
    (("trusted_networks",), {}, "trusted_networks", "must be a list"),
    (("trusted_networks", 1), "10.0.0.0/8", "trusted_networks[1]", "must be a JSON object"),
    (("trusted_networks", 1, "enabled"), True, "trusted_networks[1].enabled", "unknown key"),
    (("trusted_networks", 1, "network"), DELETE, "trusted_networks[1].network", "missing"),
    (("trusted_networks", 1, "expires_at"), DELETE, "trusted_networks[1].expires_at", "missing"),
    (("trusted_networks", 0, "id"), 0, "trusted_networks[0].id", "must be a positive integer"),
    (("trusted_networks", 0, "id"), "3", "trusted_networks[0].id", "must be a positive integer"),
    # Equal to the valid id 3 and 1, so a reload must not take the previous snapshot's entry for them.
    (("trusted_networks", 0, "id"), 3.0, "trusted_networks[0].id", "must be a positive integer"),
    (("denied_networks", 0, "id"), True, "denied_networks[0].id", "must be a positive integer"),
    (("trusted_networks", 0, "id"), None, "trusted_networks[0].id", "must be a positive integer"),
    (("trusted_networks", 1, "description"), ["LAN"], "trusted_networks[1].description", "must be a string"),
    (("trusted_networks", 1, "network"), 10, "trusted_networks[1].network", "must be a string"),
    (("trusted_networks", 1, "network"), "2001:db8:10::1/48", "trusted_networks[1].network", "host bits set"),
    (("trusted_networks", 0, "network"), "10.0.0.0/255.0.0.0", "trusted_networks[0].network", "prefix length"),
    (("trusted_networks", 0, "network"), "10.0.0.0", "trusted_networks[0].network", "missing prefix length"),
    (("trusted_networks", 0, "network"), "10.0.0.300/32", "trusted_networks[0].network", "not a valid IPv4"),
    (("trusted_networks", 1, "network"), "2001:DB8:10::/48", "trusted_networks[1].network", "not normalised"),
    (("trusted_networks", 0, "network"), "::ffff:10.0.0.0/104", "trusted_networks[0].network", "IPv4-mapped"),
    (("trusted_networks", 0, "description"), None, "trusted_networks[0].description", "must be a string"),
    (("trusted_networks", 0, "expires_at"), "2026-12-01T00:00", "trusted_networks[0].expires_at", "no UTC offset"),
    (("trusted_networks", 0, "expires_at"), 1764547200, "trusted_networks[0].expires_at", "ISO 8601"),
    (("trusted_networks", 0, "added_by"), None, "trusted_networks[0].added_by", "must be a string"),
    (("trusted_networks", 0, "added_at"), None, "trusted_networks[0].added_at", "ISO 8601"),
    # Denied networks: no expiry of their own.
    (("denied_networks", 0, "expires_at"), None, "denied_networks[0].expires_at", "unknown key"),
    (("denied_networks", 0, "network"), "10.66.0.1/16", "denied_networks[0].network", "did you mean 10.66.0.0/16?"),
    (("denied_networks", 0, "id"), DELETE, "denied_networks[0].id", "missing"),
    (("denied_networks", 0, "added_at"), "2026-13-01T00:00:00+00:00", "denied_networks[0].added_at", "ISO 8601"),
    # Internal addresses: single addresses.
    (("internal_addresses", 0, "address"), "192.168.1.10/32", "internal_addresses[0].address", "without a prefix"),
    (("internal_addresses", 0, "address"), "::ffff:192.168.1.10", "internal_addresses[0].address", "IPv4-mapped"),
    (("internal_addresses", 1, "address"), "2001:DB8::25", "internal_addresses[1].address", "not normalised"),
    (("internal_addresses", 0, "address"), "mail.example.com", "internal_addresses[0].address", "not a valid IPv4"),
    (("internal_addresses", 0, "address"), None, "internal_addresses[0].address", "must be a string"),
    (("internal_addresses", 0, "id"), -1, "internal_addresses[0].id", "must be a positive integer"),
    # Local domains: lowercase ASCII LDH without a trailing dot, and a valid route.
    (("local_domains", 0, "domain"), "Example.com", "local_domains[0].domain", "not lowercase: write it as"),
    (("local_domains", 0, "domain"), "example.com.", "local_domains[0].domain", "ends with a dot"),
    (("local_domains", 1, "domain"), "bücher.example", "local_domains[1].domain", "write an IDN as punycode"),
    (("local_domains", 0, "domain"), "mail_relay.example", "local_domains[0].domain", "is not a domain name"),
    (("local_domains", 0, "domain"), "-example.com", "local_domains[0].domain", "is not a domain name"),
    (("local_domains", 0, "domain"), "example-.com", "local_domains[0].domain", "is not a domain name"),
    (("local_domains", 0, "domain"), "example..com", "local_domains[0].domain", "is not a domain name"),
    (("local_domains", 0, "domain"), "a" * 64 + ".com", "local_domains[0].domain", "is not a domain name"),
    (("local_domains", 0, "domain"), ("a" * 63 + ".") * 4 + "com", "local_domains[0].domain", "not a domain"),
    (("local_domains", 0, "domain"), "", "local_domains[0].domain", "is not a domain name"),
    (("local_domains", 0, "domain"), None, "local_domains[0].domain", "must be a string"),
    (("local_domains", 2, "domain"), "example.com", "local_domains[2].domain", "duplicate of local_domains[0]"),
    (("local_domains", 0, "include_subdomains"), "yes", "local_domains[0].include_subdomains", "true or false"),
    (("local_domains", 0, "route"), "mail.internal.example.com", "local_domains[0].route", "has no port"),
    (("local_domains", 0, "route"), "mail.example.com:0", "local_domains[0].route", "no valid port"),
    (("local_domains", 0, "route"), "mail.example.com:65536", "local_domains[0].route", "no valid port"),
    (("local_domains", 0, "route"), "mail.example.com:025", "local_domains[0].route", "no valid port"),
    (("local_domains", 0, "route"), "mail.example.com:smtp", "local_domains[0].route", "no valid port"),
    (("local_domains", 0, "route"), "2001:db8::25:25", "local_domains[0].route", "write an IPv6 next hop in brackets"),
    (("local_domains", 0, "route"), "[2001:DB8::25]:25", "local_domains[0].route", "not normalised"),
    (("local_domains", 0, "route"), "[192.0.2.25]:25", "local_domains[0].route", "IPv4 addresses without"),
    (("local_domains", 0, "route"), "192.0.2.256:25", "local_domains[0].route", "not a valid IPv4"),
    (("local_domains", 0, "route"), "mail_host.example:25", "local_domains[0].route", "is not a host name"),
    (("local_domains", 0, "route"), ":25", "local_domains[0].route", "has no host"),
    (("local_domains", 0, "route"), 25, "local_domains[0].route", "must be host:port or null"),
    (("local_domains", 0, "route"), DELETE, "local_domains[0].route", "missing"),
    # SMTP users: a name and a Django pbkdf2_sha256 hash.
    (("smtp_users", 0, "username"), "", "smtp_users[0].username", "must not be empty"),
    (("smtp_users", 0, "username"), 5, "smtp_users[0].username", "must be a string"),
    (("smtp_users", 1, "username"), "alice", "smtp_users[1].username", "duplicate of smtp_users[0]"),
    (("smtp_users", 0, "password"), "secret", "smtp_users[0].password", "unknown key"),
    (("smtp_users", 0, "password_hash"), None, "smtp_users[0].password_hash", "must be a string"),
    (("smtp_users", 0, "password_hash"), "secret", "smtp_users[0].password_hash", "must be pbkdf2_sha256$"),
    (("smtp_users", 0, "password_hash"), "argon2$" + ALICE_HASH[14:], "smtp_users[0].password_hash", "pbkdf2_sha256$"),
    (("smtp_users", 0, "password_hash"), ALICE_HASH + "$x", "smtp_users[0].password_hash", "must be pbkdf2_sha256$"),
    (
        ("smtp_users", 0, "password_hash"),
        ALICE_HASH.replace("$1000$", "$0$"),
        "smtp_users[0].password_hash",
        "iteration count must be a positive whole number",
    ),
    (
        ("smtp_users", 0, "password_hash"),
        ALICE_HASH.replace("$1000$", "$1e3$"),
        "smtp_users[0].password_hash",
        "iteration count",
    ),
    (
        ("smtp_users", 0, "password_hash"),
        ALICE_HASH.replace("NaClNaClNaClNaCl", ""),
        "smtp_users[0].password_hash",
        "salt is empty",
    ),
    (
        ("smtp_users", 0, "password_hash"),
        ALICE_HASH[:-1],
        "smtp_users[0].password_hash",
        "hash is not valid base64",
    ),
    (
        ("smtp_users", 0, "password_hash"),
        "pbkdf2_sha256$1000$salt$c2hvcnQ=",
        "smtp_users[0].password_hash",
        "not a SHA-256 digest",
    ),
]


@pytest.mark.parametrize("reload", [False, True], ids=["cold", "reload"])
@pytest.mark.parametrize(
    ("path", "value", "error_path", "problem"), ERRORS, ids=[f"{error[2]}:{error[3]}" for error in ERRORS]
)
def test_validation_errors_name_the_json_path(path, value, error_path, problem, reload):
    # A reload given the valid snapshot as previous reuses its entries for unchanged rows, and
    # must still refuse each of these changes alike.
    previous = validate_snapshot(copy.deepcopy(VALID)) if reload else None
    with pytest.raises(SnapshotError) as caught:
        validate_snapshot(mutated(path, value), previous)
    assert caught.value.path == error_path
    assert problem in caught.value.problem
    assert str(caught.value) == f"{error_path}: {caught.value.problem}"


def test_the_first_problem_is_reported():
    document = mutated(("trusted_networks", 1, "network"), "10.0.0.1/8")
    document["smtp_users"][0]["username"] = ""
    with pytest.raises(SnapshotError, match=r"^trusted_networks\[1\]\.network: host bits set"):
        validate_snapshot(document)


def test_unknown_schema_is_refused_before_its_keys():
    with pytest.raises(SnapshotError, match=r"^schema: unsupported schema 4"):
        validate_snapshot({"schema": 4, "rules": []})


def test_compile_policy_indexes_the_snapshot():
    policy = compile_policy(validate_snapshot(copy.deepcopy(VALID)))
    now = datetime(2026, 11, 28, 12, tzinfo=UTC)
    assert isinstance(policy, CompiledPolicy)
    assert policy.serial == 7
    assert policy.trusted.lookup(parse_address("10.9.8.7"), now).id == 3
    assert policy.trusted.lookup(parse_address("2001:db8:10::1"), now).id == 4
    assert policy.trusted.lookup(parse_address("2001:db8:10::1"), datetime(2026, 12, 1, tzinfo=UTC)) is None
    assert policy.denied.lookup(parse_address("::ffff:10.66.0.1"), now).description == "guest Wi-Fi"
    assert policy.internal[Address(4, 0xC0A8010A)].description == "LAN interface"
    assert policy.local_domains["example.com"].include_subdomains is True
    assert policy.users["bob"].password_hash == BOB_HASH
    with pytest.raises(TypeError):
        policy.users["mallory"] = SmtpUser("mallory", ALICE_HASH)


@pytest.mark.parametrize(
    ("password", "encoded", "expected"),
    [
        ("correct horse", ALICE_HASH, True),
        ("correct horse ", ALICE_HASH, False),
        ("Correct horse", ALICE_HASH, False),
        ("", ALICE_HASH, False),
        ("pässwörd", BOB_HASH, True),
        ("passwort", BOB_HASH, False),
        ("correct horse", "not a hash", False),
        ("correct horse", ALICE_HASH.replace("pbkdf2_sha256", "pbkdf2_sha1"), False),
        ("correct horse", ALICE_HASH.replace("$1000$", "$1001$"), False),
    ],
)
def test_verify_password(password, encoded, expected):
    assert verify_password(password, encoded) is expected


def next_revision():
    """Return VALID changed the ways a revision changes it: an entry edited, one added, one deleted."""
    document = copy.deepcopy(VALID)
    document["serial"] = 8
    document["trusted_networks"][0]["description"] = "LAN, all floors"
    document["trusted_networks"].insert(1, {**VALID["trusted_networks"][0], "id": 9, "network": "172.16.0.0/12"})
    del document["denied_networks"][0]
    return document


def test_reload_gives_what_a_cold_load_gives():
    previous = validate_snapshot(copy.deepcopy(VALID))
    reloaded = validate_snapshot(next_revision(), previous)
    assert reloaded == validate_snapshot(next_revision())
    assert reloaded.trusted_networks[0].description == "LAN, all floors"
    assert [entry.id for entry in reloaded.trusted_networks] == [3, 9, 4]
    assert reloaded.denied_networks == ()
    # The unchanged entry is the previous snapshot's own, which compile_policy relies on.
    assert reloaded.trusted_networks[2] is previous.trusted_networks[1]


def test_reload_from_text_and_file(tmp_path):
    previous = parse_snapshot(json.dumps(VALID).encode())
    assert parse_snapshot(json.dumps(next_revision()), previous=previous) == validate_snapshot(next_revision())
    path = tmp_path / "policy.json"
    path.write_text(json.dumps(next_revision()))
    assert load_snapshot(path, previous=previous) == validate_snapshot(next_revision())


def test_reload_refuses_a_changed_entry_and_leaves_previous_usable():
    previous = validate_snapshot(copy.deepcopy(VALID))
    document = next_revision()
    document["trusted_networks"][1]["network"] = "172.16.0.1/12"
    with pytest.raises(SnapshotError, match=r"^trusted_networks\[1\]\.network: host bits set"):
        validate_snapshot(document, previous)
    assert validate_snapshot(next_revision(), previous) == validate_snapshot(next_revision())


def test_reload_cache_forgets_rows_no_longer_listed():
    snapshot = None
    for network_id in range(1, 1500):
        document = copy.deepcopy(VALID)
        document["trusted_networks"] = [{**VALID["trusted_networks"][0], "id": network_id}]
        snapshot = validate_snapshot(document, snapshot)
    assert len(snapshot.row_cache["trusted_networks"]) <= 1002
    assert snapshot.trusted_networks[0].id == 1499


def addresses_around(snapshot):
    """Return the addresses at, inside and just outside each network of snapshot."""
    addresses = []
    for entry in snapshot.trusted_networks + snapshot.denied_networks:
        network = entry.network
        for value in (network.first - 1, network.first, network.last, network.last + 1):
            if 0 <= value < 1 << (32 if network.version == 4 else 128):
                addresses.append(Address(network.version, value))
    return addresses


def test_compile_with_previous_gives_what_a_cold_compile_gives(monkeypatch):
    # Enough entries for the incremental update to be worth it, in the exporter's address order.
    document = copy.deepcopy(VALID)
    template = VALID["trusted_networks"][0]
    document["trusted_networks"] = [
        {**template, "id": index + 10, "network": f"10.{index // 256}.{index % 256}.0/24", "description": str(index)}
        for index in range(400)
    ] + VALID["trusted_networks"]
    previous = compile_policy(validate_snapshot(copy.deepcopy(document)))
    trusted = document["trusted_networks"]
    trusted[5]["description"] = "edited"
    del trusted[100]
    trusted.insert(200, {**template, "id": 900, "network": "10.0.199.128/25", "description": "new subnet"})
    trusted.insert(300, {**template, "id": 901, "network": "10.1.0.0/16", "description": "new block"})
    trusted.append(trusted.pop(0))  # moved
    updates = []
    updated = NetworkSet.updated

    def record_update(*args):
        updates.append(updated(*args))
        return updates[-1]

    monkeypatch.setattr(NetworkSet, "updated", record_update)

    snapshot = validate_snapshot(copy.deepcopy(document), previous.snapshot)
    policy = compile_policy(snapshot, previous)
    cold = compile_policy(validate_snapshot(copy.deepcopy(document)))
    assert updates and None not in updates
    assert policy.denied is previous.denied  # unchanged
    now = datetime(2026, 11, 28, 12, tzinfo=UTC)
    later = datetime(2026, 12, 2, tzinfo=UTC)
    for address in addresses_around(cold.snapshot) + addresses_around(previous.snapshot):
        for moment in (now, later):
            assert policy.trusted.lookup(address, moment) == cold.trusted.lookup(address, moment)
            assert policy.denied.lookup(address, moment) == cold.denied.lookup(address, moment)
    assert len(policy.trusted) == len(cold.trusted)


def _with_profiles(**profiles) -> dict:
    document = copy.deepcopy(VALID)
    document["schema"] = 2
    document["profiles"] = {"trusted_networks": [], "smtp_users": [], **profiles}
    return document


_PROFILE = {
    "rate_limit_per_hour": 100,
    "recipients_per_hour": None,
    "allowed_sender_domains": ["example.com"],
    "require_tls": True,
    "owner": "ops",
    "ticket": "CHG-1",
}


def test_schema_2_profiles_are_read_by_network_id_and_username():
    snapshot = validate_snapshot(
        _with_profiles(trusted_networks=[{"id": 3, **_PROFILE}], smtp_users=[{"username": "bob", **_PROFILE}])
    )
    assert snapshot.profiles.trusted_networks[3].rate_limit_per_hour == 100
    assert snapshot.profiles.smtp_users["bob"].allowed_sender_domains == ("example.com",)
    # A schema-2 snapshot without profiles is as valid as schema 1.
    document = copy.deepcopy(VALID)
    document["schema"] = 2
    assert validate_snapshot(document).profiles.trusted_networks == {}


@pytest.mark.parametrize(
    ("profiles", "path", "problem"),
    [
        ({"trusted_networks": [{"id": 99, **_PROFILE}]}, "profiles.trusted_networks[0].id", "is not one of"),
        ({"trusted_networks": [{"id": 3, **_PROFILE}] * 2}, "profiles.trusted_networks[1].id", "has a profile"),
        ({"smtp_users": [{"username": "carol", **_PROFILE}]}, "profiles.smtp_users[0].username", "is not one of"),
        (
            {"trusted_networks": [{"id": 3, **_PROFILE, "rate_limit_per_hour": 0}]},
            "profiles.trusted_networks[0].rate_limit_per_hour",
            "positive integer",
        ),
        (
            {"trusted_networks": [{"id": 3, **_PROFILE, "allowed_sender_domains": ["Example.com"]}]},
            "profiles.trusted_networks[0].allowed_sender_domains",
            "not lowercase",
        ),
        (
            {"trusted_networks": [{"id": 3, **_PROFILE, "require_tls": 1}]},
            "profiles.trusted_networks[0].require_tls",
            "true or false",
        ),
        ({"trusted_networks": [{"id": 3, **_PROFILE, "colour": 1}]}, "profiles.trusted_networks[0].colour", "unknown"),
        ({"colour": []}, "profiles.colour", "unknown key"),
    ],
)
def test_profiles_are_validated_strictly(profiles, path, problem):
    with pytest.raises(SnapshotError) as error:
        validate_snapshot(_with_profiles(**profiles))
    assert error.value.path == path
    assert problem in error.value.problem


def test_the_documented_example_is_a_snapshot_relayd_takes():
    # docs/snapshot.md shows the format by example: it must stay one relayd loads, every checkbox included.
    text = (Path(__file__).parents[2] / "docs" / "snapshot.md").read_text(encoding="utf-8")
    example = re.search(r"```json\n(.*?)```", text, re.DOTALL)[1]
    assert parse_snapshot(example).serial == 7
