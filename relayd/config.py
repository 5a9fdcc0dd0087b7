"""Load a policy snapshot (schema 1, docs/snapshot.md), validate all of it, and compile it for lookups."""

from __future__ import annotations

import gc
import json
import os
import re
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import MappingProxyType
from typing import Any, NamedTuple, TypeVar

from relayd.matcher import Address, Network, NetworkSet, parse_host_address, parse_network
from relayd.passwords import parse_password_hash

SCHEMA = 1

E = TypeVar("E")


class SnapshotError(ValueError):
    """Refuse a snapshot; the message names the JSON path of the first problem and what is wrong."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = path
        self.problem = problem


# Entries are NamedTuples rather than dataclasses because a reload builds 100,000 of them and a
# frozen dataclass costs twice as much to construct; they are just as immutable.
class TrustedNetwork(NamedTuple):
    """A network whose clients may relay while "these IP addresses" is on."""

    id: int
    network: Network
    description: str
    expires_at: datetime | None
    added_by: str
    added_at: datetime


class DeniedNetwork(NamedTuple):
    """A network whose clients can never relay."""

    id: int
    network: Network
    description: str
    added_by: str
    added_at: datetime


class InternalAddress(NamedTuple):
    """A local address; clients connecting to it may relay while "these internal addresses" is on."""

    id: int
    address: Address
    description: str


class LocalDomain(NamedTuple):
    """A domain this relay accepts mail for, and the next hop that mail goes to."""

    domain: str
    include_subdomains: bool
    route: str | None


class SmtpUser(NamedTuple):
    """An enabled SMTP AUTH account."""

    username: str
    password_hash: str

    def __repr__(self) -> str:
        # Keep hashes out of logs and tracebacks.
        return f"SmtpUser(username={self.username!r}, password_hash='...')"


@dataclass(frozen=True, slots=True)
class Restrictions:
    """The three relay checkboxes."""

    allow_authenticated: bool
    allow_listed_ips: bool
    allow_internal_addresses: bool


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A validated policy snapshot."""

    schema: int
    serial: int
    generated_at: datetime
    restrictions: Restrictions
    trusted_networks: tuple[TrustedNetwork, ...]
    denied_networks: tuple[DeniedNetwork, ...]
    internal_addresses: tuple[InternalAddress, ...]
    local_domains: tuple[LocalDomain, ...]
    smtp_users: tuple[SmtpUser, ...]


@dataclass(frozen=True, slots=True)
class CompiledPolicy:
    """A snapshot indexed for the decision function."""

    snapshot: Snapshot
    trusted: NetworkSet[TrustedNetwork]
    denied: NetworkSet[DeniedNetwork]
    internal: Mapping[Address, InternalAddress]
    local_domains: Mapping[str, LocalDomain]
    users: Mapping[str, SmtpUser]

    @property
    def serial(self) -> int:
        """Return the serial of the snapshot this policy enforces."""
        return self.snapshot.serial


def load_snapshot(path: str | os.PathLike[str]) -> Snapshot:
    """Read and validate the snapshot file at path; raise SnapshotError if any of it is unreadable or invalid."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise SnapshotError(os.fspath(path), f"cannot read the snapshot: {exc.strerror}") from exc
    return parse_snapshot(data)


def parse_snapshot(data: str | bytes) -> Snapshot:
    """Parse and validate snapshot JSON text; raise SnapshotError naming the first problem."""
    with _collector_paused():
        try:
            document = json.loads(data, parse_constant=_refuse_constant)
        except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError and NaN/Infinity
            raise SnapshotError("snapshot", f"not valid JSON: {exc}") from None
        return validate_snapshot(document)


def compile_policy(snapshot: Snapshot) -> CompiledPolicy:
    """Index a validated snapshot for the decision function."""
    with _collector_paused():
        return CompiledPolicy(
            snapshot=snapshot,
            trusted=NetworkSet((entry.network, entry, entry.expires_at) for entry in snapshot.trusted_networks),
            denied=NetworkSet((entry.network, entry, None) for entry in snapshot.denied_networks),
            internal=MappingProxyType({entry.address: entry for entry in snapshot.internal_addresses}),
            local_domains=MappingProxyType({entry.domain: entry for entry in snapshot.local_domains}),
            users=MappingProxyType({entry.username: entry for entry in snapshot.smtp_users}),
        )


@contextmanager
def _collector_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector for the duration, restoring its previous state after.

    A 100,000-network reload allocates about a million objects, and each burst of allocations
    makes the collector walk the whole heap, the policy still in force included: about a third
    of the reload time. What is built here holds no reference cycles, and any cycle made
    meanwhile elsewhere is merely collected a moment later.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _refuse_constant(name: str) -> None:
    raise ValueError(f"{name} is not allowed in JSON")


class _Invalid(Exception):
    """Report a bad key of the object being validated; the caller prefixes the object's path."""

    def __init__(self, key: str | None, problem: str) -> None:
        super().__init__(problem)
        self.key = key
        self.problem = problem


def _keys(*names: str) -> Any:
    # A dict keys view compares to another in one C call, the cheapest exact-key-set check.
    return dict.fromkeys(names).keys()


_ROOT_KEYS = _keys(
    "schema",
    "serial",
    "generated_at",
    "restrictions",
    "trusted_networks",
    "denied_networks",
    "internal_addresses",
    "local_domains",
    "smtp_users",
)
_RESTRICTION_KEYS = _keys("allow_authenticated", "allow_listed_ips", "allow_internal_addresses")
_TRUSTED_KEYS = _keys("id", "network", "description", "expires_at", "added_by", "added_at")
_DENIED_KEYS = _keys("id", "network", "description", "added_by", "added_at")
_INTERNAL_KEYS = _keys("id", "address", "description")
_DOMAIN_KEYS = _keys("domain", "include_subdomains", "route")
_USER_KEYS = _keys("username", "password_hash")


def validate_snapshot(document: object) -> Snapshot:
    """Validate a parsed snapshot document; raise SnapshotError naming the JSON path of the first problem."""
    if type(document) is not dict:
        raise SnapshotError("snapshot", "must be a JSON object")
    # The schema comes first: a document of another schema may legitimately have other keys.
    if "schema" not in document:
        raise SnapshotError("schema", "missing")
    schema = document["schema"]
    if type(schema) is not int or schema != SCHEMA:
        raise SnapshotError("schema", f"unsupported schema {schema!r}: this relayd understands schema {SCHEMA}")
    try:
        _check_shape(document, _ROOT_KEYS)
        serial = _positive_int(document, "serial")
        generated_at = _timestamp(document, "generated_at")
    except _Invalid as exc:
        raise SnapshotError(exc.key or "snapshot", exc.problem) from None
    snapshot = Snapshot(
        schema=schema,
        serial=serial,
        generated_at=generated_at,
        restrictions=_restrictions(document["restrictions"]),
        trusted_networks=_entries(document, "trusted_networks", _TRUSTED_KEYS, _trusted_network),
        denied_networks=_entries(document, "denied_networks", _DENIED_KEYS, _denied_network),
        internal_addresses=_entries(document, "internal_addresses", _INTERNAL_KEYS, _internal_address),
        local_domains=_entries(document, "local_domains", _DOMAIN_KEYS, _local_domain),
        smtp_users=_entries(document, "smtp_users", _USER_KEYS, _smtp_user),
    )
    # Duplicate domains or users would be ambiguous (which route, which hash?), so they are refused.
    # Duplicate networks and addresses are harmless: the matcher nests them and the dashboard prevents them.
    _refuse_duplicates("local_domains", "domain", [entry.domain for entry in snapshot.local_domains])
    _refuse_duplicates("smtp_users", "username", [entry.username for entry in snapshot.smtp_users])
    return snapshot


def _check_shape(value: object, keys: Any) -> dict:
    """Return value if it is an object with exactly keys; else report its first unknown, then first missing key."""
    if type(value) is not dict:
        raise _Invalid(None, "must be a JSON object")
    for key in value:
        if key not in keys:
            raise _Invalid(key, "unknown key: this relayd refuses a policy it cannot fully enforce")
    for key in keys:
        if key not in value:
            raise _Invalid(key, "missing")
    return value


def _restrictions(value: object) -> Restrictions:
    try:
        item = _check_shape(value, _RESTRICTION_KEYS)
        return Restrictions(
            allow_authenticated=_boolean(item, "allow_authenticated"),
            allow_listed_ips=_boolean(item, "allow_listed_ips"),
            allow_internal_addresses=_boolean(item, "allow_internal_addresses"),
        )
    except _Invalid as exc:
        raise SnapshotError(f"restrictions.{exc.key}" if exc.key else "restrictions", exc.problem) from None


def _entries(document: dict, key: str, keys: Any, build: Callable[[dict], E]) -> tuple[E, ...]:
    """Validate the list document[key] of objects with exactly keys, building each with build."""
    items = document[key]
    if type(items) is not list:
        raise SnapshotError(key, "must be a list")
    entries: list[E] = []
    try:
        for item in items:
            if type(item) is not dict or item.keys() != keys:
                _check_shape(item, keys)
            entries.append(build(item))
    except _Invalid as exc:
        # Entries are appended in order, so the failing item's index is the count built so far;
        # the path is only formatted on failure, which keeps 100,000-entry reloads fast.
        path = f"{key}[{len(entries)}]"
        raise SnapshotError(f"{path}.{exc.key}" if exc.key else path, exc.problem) from None
    return tuple(entries)


def _refuse_duplicates(key: str, field: str, values: list[str]) -> None:
    seen: dict[str, int] = {}
    for index, value in enumerate(values):
        if value in seen:
            raise SnapshotError(f"{key}[{index}].{field}", f"duplicate of {key}[{seen[value]}]")
        seen[value] = index


def _trusted_network(item: dict) -> TrustedNetwork:
    return TrustedNetwork(
        _positive_int(item, "id"),
        _network(item, "network"),
        _string(item, "description"),
        _optional_timestamp(item, "expires_at"),
        _string(item, "added_by"),
        _timestamp(item, "added_at"),
    )


def _denied_network(item: dict) -> DeniedNetwork:
    return DeniedNetwork(
        _positive_int(item, "id"),
        _network(item, "network"),
        _string(item, "description"),
        _string(item, "added_by"),
        _timestamp(item, "added_at"),
    )


def _internal_address(item: dict) -> InternalAddress:
    return InternalAddress(_positive_int(item, "id"), _address(item, "address"), _string(item, "description"))


def _local_domain(item: dict) -> LocalDomain:
    return LocalDomain(_domain(item, "domain"), _boolean(item, "include_subdomains"), _route(item, "route"))


def _smtp_user(item: dict) -> SmtpUser:
    username = _string(item, "username")
    if not username:
        raise _Invalid("username", "must not be empty")
    password_hash = _string(item, "password_hash")
    try:
        parse_password_hash(password_hash)
    except ValueError as exc:
        raise _Invalid("password_hash", str(exc)) from None
    return SmtpUser(username, password_hash)


def _positive_int(item: dict, key: str) -> int:
    value = item[key]
    if type(value) is not int or value < 1:
        raise _Invalid(key, "must be a positive integer")
    return value


def _boolean(item: dict, key: str) -> bool:
    value = item[key]
    if type(value) is not bool:
        raise _Invalid(key, "must be true or false")
    return value


def _string(item: dict, key: str) -> str:
    value = item[key]
    if type(value) is not str:
        raise _Invalid(key, "must be a string")
    return value


def _timestamp(item: dict, key: str) -> datetime:
    value = item[key]
    if type(value) is not str:
        raise _Invalid(key, "must be an ISO 8601 timestamp string")
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise _Invalid(key, f"{value!r} is not an ISO 8601 timestamp") from None
    # A naive time would be compared in whatever zone the relay host runs in.
    if moment.tzinfo is None:
        raise _Invalid(key, f"{value!r} has no UTC offset: add one, e.g. +00:00")
    return moment


def _optional_timestamp(item: dict, key: str) -> datetime | None:
    return None if item[key] is None else _timestamp(item, key)


def _network(item: dict, key: str) -> Network:
    value = _string(item, key)
    try:
        return parse_network(value)
    except ValueError as exc:
        raise _Invalid(key, str(exc)) from None


def _address(item: dict, key: str) -> Address:
    value = _string(item, key)
    try:
        return parse_host_address(value)
    except ValueError as exc:
        raise _Invalid(key, str(exc)) from None


_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_DOMAIN = re.compile(rf"{_LABEL}(?:\.{_LABEL})*", re.ASCII)
_HOSTNAME = re.compile(rf"{_LABEL}(?:\.{_LABEL})*", re.ASCII | re.IGNORECASE)
_DOTTED_NUMBERS = re.compile(r"[0-9.]+", re.ASCII)


def _domain(item: dict, key: str) -> str:
    value = _string(item, key)
    if not value.isascii():
        raise _Invalid(key, f"{value!r} is not ASCII: write an IDN as punycode (xn--...)")
    if value.endswith("."):
        raise _Invalid(key, f"{value!r} ends with a dot: write it as {value.rstrip('.')!r}")
    if value != value.lower():
        raise _Invalid(key, f"{value!r} is not lowercase: write it as {value.lower()!r}")
    if len(value) > 253 or not _DOMAIN.fullmatch(value):
        raise _Invalid(key, f"{value!r} is not a domain name (labels of 1-63 letters, digits and inner hyphens)")
    return value


def _route(item: dict, key: str) -> str | None:
    """Validate a next hop written host:port, [ipv6]:port, or null for none of its own."""
    value = item[key]
    if value is None:
        return None
    if type(value) is not str:
        raise _Invalid(key, "must be host:port or null")
    host, colon, port = value.rpartition(":")
    if not colon:
        raise _Invalid(key, f"{value!r} has no port: write it as host:port, e.g. {value}:25")
    if not (port.isascii() and port.isdigit()) or port[0] == "0" or int(port) > 65535:
        raise _Invalid(key, f"{value!r} has no valid port (1-65535)")
    if host.startswith("[") and host.endswith("]"):
        _route_address(key, host[1:-1], 6)
    elif ":" in host:
        raise _Invalid(key, f"{value!r}: write an IPv6 next hop in brackets, e.g. [2001:db8::25]:25")
    elif _DOTTED_NUMBERS.fullmatch(host):
        _route_address(key, host, 4)
    elif len(host) > 253 or not _HOSTNAME.fullmatch(host):
        raise _Invalid(key, f"{value!r}: {host!r} is not a host name")
    return value


def _route_address(key: str, text: str, version: int) -> None:
    try:
        address = parse_host_address(text)
    except ValueError as exc:
        raise _Invalid(key, f"next hop {text!r}: {exc}") from None
    if address.version != version:
        raise _Invalid(key, f"next hop {text!r}: write IPv6 addresses in brackets and IPv4 addresses without")
