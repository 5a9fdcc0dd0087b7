"""Load a policy snapshot (schema 1, 2 or 3, docs/snapshot.md), validate all of it, and compile it for lookups."""

from __future__ import annotations

import gc
import os
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from dataclasses import fields as dataclass_fields
from datetime import datetime
from itertools import chain, compress, count, islice, repeat
from operator import attrgetter, is_, is_not, itemgetter, le, lt, not_
from pathlib import Path
from types import MappingProxyType
from typing import Any, NamedTuple, TypeVar, cast

import orjson

from relayd.hostport import DOTTED_NUMBERS, split_host_port
from relayd.matcher import (
    Address,
    Network,
    NetworkSet,
    network_order,
    parse_host_address,
    parse_network,
    parse_networks,
)
from relayd.passwords import parse_password_hash

# The snapshot schemas this relayd enforces (docs/snapshot.md), reported to the dashboard, which
# publishes nothing that a reporting node could not enforce. A newer schema is refused, never read
# as an older one: a key this relayd does not know might be a restriction it would silently drop.
# This module is the one home of these facts; the dashboard imports them.
# Schema 2 is schema 1 plus the optional "profiles" (issue 15). Schema 3 is schema 2 in which
# either network list may be compact (relayd/compact.py): the same entries, read faster.
BASE_SCHEMA = 1  # what a snapshot carries unless it uses a feature of a later schema
PROFILES_SCHEMA = 2
COMPACT_SCHEMA = 3
SUPPORTED_SCHEMAS = (BASE_SCHEMA, PROFILES_SCHEMA, COMPACT_SCHEMA)


E = TypeVar("E")  # a NamedTuple; typing has no bound that says so and offers _fields


class SnapshotError(ValueError):
    """Refuse a snapshot; the message names the JSON path of the first problem and what is wrong.

    serial is the refused snapshot's serial when it could be read, for the status report.
    """

    def __init__(self, path: str, problem: str, serial: int | None = None) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = path
        self.problem = problem
        self.serial = serial


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


class Profile(NamedTuple):
    """Limits on what one trusted network or SMTP user may relay (docs/design.md item 6)."""

    rate_limit_per_hour: int | None
    recipients_per_hour: int | None
    allowed_sender_domains: tuple[str, ...]
    require_tls: bool
    owner: str
    ticket: str


@dataclass(frozen=True, slots=True)
class Profiles:
    """The profiles of a snapshot: by trusted network id and by SMTP username."""

    trusted_networks: Mapping[int, Profile] = field(default_factory=lambda: MappingProxyType({}))
    smtp_users: Mapping[str, Profile] = field(default_factory=lambda: MappingProxyType({}))


NO_PROFILES = Profiles()


# The network lists of a snapshot and the fields of their entries, in the order a compact list's columns have them.
NETWORK_LISTS = {"trusted_networks": TrustedNetwork._fields, "denied_networks": DeniedNetwork._fields}


@dataclass(frozen=True, slots=True)
class Restrictions:
    """The dialog's relay checkboxes; each field is a snapshot key of "restrictions" (docs/snapshot.md)."""

    allow_authenticated: bool
    allow_listed_ips: bool
    allow_internal_addresses: bool


# The keys of the snapshot's "restrictions", all required: a new checkbox is one field above.
RESTRICTION_KEYS = tuple(flag.name for flag in dataclass_fields(Restrictions))


class AuditAnchor(NamedTuple):
    """The dashboard's audit chain when the snapshot was published: its length and head hash.

    relayd does not use it; keeping the snapshot keeps it, a witness outside the dashboard's
    database against which `manage.py verify_audit --against` detects a shortened or rewritten log.
    """

    count: int  # type: ignore[assignment]  # the snapshot's name; it hides tuple.count, unused here
    head: str


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
    # For each network list, the entry that each row (an object's JSON values in field order)
    # validated to, so that a reload given this snapshot as previous validates only new rows.
    # A row always validates to the same entry, so the cache is shared down the line of snapshots
    # parsed each with the one before, and it is pruned when it holds many rows no longer listed.
    row_cache: dict[str, dict[tuple[Any, ...], Any]] = field(default_factory=dict, repr=False, compare=False)
    audit: AuditAnchor | None = None  # optional: snapshots published before anchors existed lack it
    profiles: Profiles = NO_PROFILES  # schema 2 only


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


def load_snapshot(path: str | os.PathLike[str], previous: Snapshot | None = None) -> Snapshot:
    """Read and validate the snapshot file at path; raise SnapshotError if any of it is unreadable or invalid.

    previous, the snapshot in force, only makes this faster: see parse_snapshot.
    """
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise SnapshotError(os.fspath(path), f"cannot read the snapshot: {exc.strerror}") from exc
    return parse_snapshot(data, previous)


def parse_snapshot(data: str | bytes, previous: Snapshot | None = None) -> Snapshot:
    """Parse and validate snapshot JSON text; raise SnapshotError naming the first problem.

    previous, the snapshot in force, only makes this faster: network entries whose JSON is the same
    as one of its entries are taken from it rather than validated again. The result is the same.
    """
    with _collector_paused():
        try:
            # orjson decodes a 100,000-network snapshot a quarter faster than json.loads. It refuses
            # NaN and Infinity, which are not JSON, and reads integers beyond 64 bits as floats,
            # which validation then refuses as it would any other non-integer.
            document = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise SnapshotError("snapshot", f"not valid JSON: {exc}") from None
        return validate_snapshot(document, previous)


def compile_policy(snapshot: Snapshot, previous: CompiledPolicy | None = None) -> CompiledPolicy:
    """Index a validated snapshot for the decision function.

    previous, the policy in force, only makes this faster: the network sets are updated from its
    own with the entries that changed, when these are few. The result is the same.
    """
    with _collector_paused():
        return CompiledPolicy(
            snapshot=snapshot,
            trusted=_network_set(
                snapshot.trusted_networks,
                _trusted_expiries,
                (previous.snapshot.trusted_networks, previous.trusted) if previous else None,
            ),
            denied=_network_set(
                snapshot.denied_networks,
                _denied_expiries,
                (previous.snapshot.denied_networks, previous.denied) if previous else None,
            ),
            internal=MappingProxyType({entry.address: entry for entry in snapshot.internal_addresses}),
            local_domains=MappingProxyType({entry.domain: entry for entry in snapshot.local_domains}),
            users=MappingProxyType({entry.username: entry for entry in snapshot.smtp_users}),
        )


def _trusted_expiries(entries: Sequence[TrustedNetwork]) -> list[datetime | None]:
    # map() and attrgetter loop in C, much faster than a generator over 100,000 entries.
    return list(map(attrgetter("expires_at"), entries))


def _denied_expiries(entries: Sequence[DeniedNetwork]) -> list[datetime | None]:
    return [None] * len(entries)


def _network_set(
    entries: tuple[E, ...],
    expiries: Callable[[Sequence[E]], list[datetime | None]],
    previous: tuple[tuple[E, ...], NetworkSet[E]] | None,
) -> NetworkSet[E]:
    """Return the NetworkSet of entries; given previous (entries and their set), change only what changed."""
    networks = attrgetter("network")
    if previous is not None:
        previous_entries, previous_set = previous
        changes = _changes(previous_entries, entries, limit=len(entries) // 10)
        if changes == ([], []):
            return previous_set
        if changes is not None:
            removed, added = (zip(map(networks, part), part, expiries(part), strict=True) for part in changes)
            updated = previous_set.updated(removed, added)
            if updated is not None:
                return updated
    return NetworkSet.from_columns(list(map(networks, entries)), entries, expiries(entries))


# How far _changes looks ahead for the next entry in both lists.
_LOOKAHEAD = 8


def _changes(old: Sequence[E], new: Sequence[E], limit: int) -> tuple[list[E], list[E]] | None:
    """Return the entries of old not kept in new and the entries of new not from old, or None if over limit.

    Entries are told apart by identity: parse_snapshot(previous=...) hands back the very entry
    objects of unchanged rows. The exporter keeps entries sorted by address, so the lists are
    walked side by side; where they differ, a short look ahead finds the next shared entry.
    Whatever it finds, old less the first list plus the second is new.
    """
    removed: list[E] = []
    added: list[E] = []
    i = j = 0
    while i < len(old) and j < len(new):
        if old[i] is new[j]:
            i += 1
            j += 1
            continue
        for skip in range(1, _LOOKAHEAD):
            if j + skip < len(new) and new[j + skip] is old[i]:
                added += new[j : j + skip]
                j += skip
                break
            if i + skip < len(old) and old[i + skip] is new[j]:
                removed += old[i : i + skip]
                i += skip
                break
        else:  # replaced, or moved further than the look ahead
            removed.append(old[i])
            added.append(new[j])
            i += 1
            j += 1
        if len(removed) + len(added) > limit:
            return None
    removed += old[i:]
    added += new[j:]
    return (removed, added) if len(removed) + len(added) <= limit else None


@contextmanager
def _collector_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector for the duration, restoring its previous state after.

    A 100,000-network reload allocates about a million objects, and each burst of allocations
    makes the collector walk the whole heap, the policy still in force included: about a third
    of the reload time. What is built here holds no reference cycles, and any cycle made
    meanwhile elsewhere is merely collected a little later.

    Then what survived, mostly the new policy, is moved to the oldest generation as it is:
    otherwise the first allocation after would make the collector walk all of it at once, a
    tenth of a reload, only to find it alive. The policy lives until the next reload, which is
    what the oldest generation is for; freeze() and unfreeze() move objects there without a walk.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.freeze()
            gc.unfreeze()
            gc.enable()


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
_ROOT_KEYS_WITH_AUDIT = _keys(*_ROOT_KEYS, "audit")
_AUDIT_KEYS = _keys("count", "head")
_RESTRICTION_KEYS = _keys(*RESTRICTION_KEYS)


def validate_snapshot(document: object, previous: Snapshot | None = None) -> Snapshot:
    """Validate a parsed snapshot document; raise SnapshotError naming the JSON path of the first problem.

    previous, the snapshot in force, only makes this faster: see parse_snapshot.
    """
    if type(document) is not dict:
        raise SnapshotError("snapshot", "must be a JSON object")
    # The schema comes first: a document of another schema may legitimately have other keys.
    if "schema" not in document:
        raise SnapshotError("schema", "missing")
    schema = document["schema"]
    if type(schema) is not int or schema not in SUPPORTED_SCHEMAS:
        *earlier, last = map(str, SUPPORTED_SCHEMAS)
        understood = f"{', '.join(earlier)} and {last}"
        raise SnapshotError("schema", f"unsupported schema {schema!r}: this relayd understands schemas {understood}")
    try:
        keys = _ROOT_KEYS_WITH_AUDIT if "audit" in document else _ROOT_KEYS
        if schema >= PROFILES_SCHEMA and "profiles" in document:
            keys = _keys(*keys, "profiles")
        _check_shape(document, keys)
        serial = _positive_int(document["serial"], "serial")
        generated_at = _timestamp(document["generated_at"], "generated_at")
    except _Invalid as exc:
        raise SnapshotError(exc.key or "snapshot", exc.problem) from None
    try:
        return _validate_policy(document, serial, generated_at, previous)
    except SnapshotError as exc:
        exc.serial = serial
        raise


def _validate_policy(
    document: dict[str, Any], serial: int, generated_at: datetime, previous: Snapshot | None
) -> Snapshot:
    """Validate the policy of a document whose envelope (schema, keys, serial, time) is valid."""
    schema = document["schema"]
    audit = _audit_anchor(document["audit"]) if "audit" in document else None
    row_cache = previous.row_cache if previous is not None else {}
    restrictions = _restrictions(document["restrictions"])
    trusted = _network_list(document, "trusted_networks", TrustedNetwork, _trusted_network, row_cache)
    denied = _network_list(document, "denied_networks", DeniedNetwork, _denied_network, row_cache)
    snapshot = Snapshot(
        schema=schema,
        serial=serial,
        generated_at=generated_at,
        restrictions=restrictions,
        trusted_networks=trusted,
        denied_networks=denied,
        internal_addresses=_entries(document, "internal_addresses", InternalAddress, _internal_address),
        local_domains=_entries(document, "local_domains", LocalDomain, _local_domain),
        smtp_users=_entries(document, "smtp_users", SmtpUser, _smtp_user),
        row_cache=row_cache,
        audit=audit,
    )
    if "profiles" in document:
        snapshot = replace(snapshot, profiles=_profiles(document["profiles"], snapshot))
    # Duplicate domains or users would be ambiguous (which route, which hash?), so they are refused.
    # Duplicate networks and addresses are harmless: the matcher nests them and the dashboard prevents them.
    _refuse_duplicates("local_domains", "domain", [entry.domain for entry in snapshot.local_domains])
    _refuse_duplicates("smtp_users", "username", [entry.username for entry in snapshot.smtp_users])
    return snapshot


def _check_shape(value: object, keys: Any) -> dict[str, Any]:
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


def _audit_anchor(value: object) -> AuditAnchor:
    try:
        item = _check_shape(value, _AUDIT_KEYS)
        count = item["count"]
        if type(count) is not int or count < 0:
            raise _Invalid("count", "must be a non-negative integer")
        head = item["head"]
        if type(head) is not str or not _AUDIT_HEAD.fullmatch(head):
            raise _Invalid("head", "must be 64 lowercase hexadecimal digits")
        return AuditAnchor(count, head)
    except _Invalid as exc:
        raise SnapshotError(f"audit.{exc.key}" if exc.key else "audit", exc.problem) from None


_AUDIT_HEAD = re.compile(r"[0-9a-f]{64}")


def _restrictions(value: object) -> Restrictions:
    try:
        item = _check_shape(value, _RESTRICTION_KEYS)
        return Restrictions(**{key: _boolean(item[key], key) for key in _RESTRICTION_KEYS})
    except _Invalid as exc:
        raise SnapshotError(f"restrictions.{exc.key}" if exc.key else "restrictions", exc.problem) from None


def _entries(
    document: dict[str, Any], key: str, entry_type: type[E], build: Callable[[tuple[Any, ...]], E]
) -> tuple[E, ...]:
    """Validate the list document[key] of entry_type objects, building each from its row with build.

    A row is an object's values in the order of entry_type's fields, which are the object's keys.
    """
    items = document[key]
    if type(items) is not list:
        raise SnapshotError(key, "must be a list")
    keys = _keys(*entry_type._fields)  # type: ignore[attr-defined]  # see E
    row_of = itemgetter(*entry_type._fields)  # type: ignore[attr-defined]
    entries: list[E] = []
    try:
        for item in items:
            if type(item) is not dict or item.keys() != keys:
                _check_shape(item, keys)
            entries.append(build(row_of(item)))
    except _Invalid as exc:
        # Entries are appended in order, so the failing item's index is the count built so far;
        # the path is only formatted on failure, which keeps 100,000-entry reloads fast.
        path = f"{key}[{len(entries)}]"
        raise SnapshotError(f"{path}.{exc.key}" if exc.key else path, exc.problem) from None
    return tuple(entries)


def _network_list(
    document: dict[str, Any],
    key: str,
    entry_type: type[E],
    build: Callable[[tuple[Any, ...]], E],
    row_cache: dict[str, dict[Any, Any]],
) -> tuple[E, ...]:
    """Validate the network list document[key], compact (from schema 3 on) or a list of objects."""
    if document["schema"] >= COMPACT_SCHEMA and type(document[key]) is dict:
        return _compact_entries(document[key], key, entry_type, build, row_cache.setdefault(f"{key}.blocks", {}))
    return _network_entries(document, key, entry_type, build, row_cache)


def _network_entries(
    document: dict[str, Any],
    key: str,
    entry_type: type[E],
    build: Callable[[tuple[Any, ...]], E],
    row_cache: dict[str, dict[tuple[Any, ...], E]],
) -> tuple[E, ...]:
    """Validate the list document[key] as _entries does, but faster, and fastest for rows seen before.

    The same row always makes the same entry. So rows found in row_cache take their entry from
    it, and new rows are added to it: at 100,000 entries, of which a reload changes a few, that
    saves most of the validation.
    """
    items = document[key]
    fields = entry_type._fields  # type: ignore[attr-defined]
    try:
        # Passes in C over the whole list. len() raises TypeError for a number or null, itemgetter
        # TypeError for a list or string and KeyError for a missing key; a longer object has an
        # unknown key. Anything wrong, _entries goes through the list again to name it.
        if type(items) is not list or max(map(len, items), default=0) > len(fields):
            raise TypeError
        rows = list(map(itemgetter(*fields), items))
        cache = row_cache.setdefault(key, {})
        if cache:
            # The id is the one field whose values can be equal but not the same (true and 1.0
            # equal 1), so its type is checked before rows are looked up. A list or an object among
            # the values raises TypeError (unhashable).
            if not _INT.issuperset(map(type, map(itemgetter(0), rows))):
                raise TypeError
            entries = list(map(cache.get, rows))
            new: Sequence[int] = list(compress(count(), map(is_, entries, repeat(None))))
        else:
            entries = [None] * len(rows)
            new = range(len(rows))
        new_rows = list(map(rows.__getitem__, new))
        built = _build_rows(new_rows, entry_type, build)
    except (TypeError, KeyError, _Invalid):
        return _entries(document, key, entry_type, build)
    for index, entry in zip(new, built, strict=True):
        entries[index] = entry
    cache.update(zip(new_rows, built, strict=True))
    filled = cast(list[E], entries)  # each None is replaced by the entry built for it above
    if len(cache) > 2 * len(rows) + 1000:
        row_cache[key] = dict(zip(rows, filled, strict=True))
    return tuple(filled)


def _build_rows(rows: list[tuple[Any, ...]], entry_type: type[E], build: Callable[[tuple[Any, ...]], E]) -> list[E]:
    """Return the entries of rows: a column at a time (as compact lists are read) where they are many."""
    if len(rows) > _MANY_ROWS:
        try:
            return _COLUMN_BUILDERS[entry_type]([list(column) for column in zip(*rows, strict=True)])[0]
        except (TypeError, ValueError):
            pass  # an entry the column validators are unsure of, or IPv6 before IPv4: one by one
    return list(map(build, rows))


# Below this many rows, building them one by one costs less than making columns of them.
_MANY_ROWS = 100
_INT = frozenset({int})
_STR = frozenset({str})
_COMPACT_KEYS = _keys("columns", "blocks")


class _Block(NamedTuple):
    """A validated block of a compact list: its entries and the network_order of its first and last."""

    entries: tuple[Any, ...]
    first: int
    last: int


def _compact_entries(
    section: dict[str, Any],
    key: str,
    entry_type: type[E],
    build: Callable[[tuple[Any, ...]], E],
    cache: dict[str, _Block],
) -> tuple[E, ...]:
    """Validate a compact network list: its blocks, each entry as a list of objects has it, and their order.

    Blocks whose text is in cache take their entries from it, and the cache is left holding this
    list's blocks: a reload that changed a few entries validates a few blocks. The new blocks are
    validated a column at a time, in C loops; anything that fails there is validated again one
    entry at a time, which names the problem, or accepts what the fast path was only unsure of.
    """
    fields = list(entry_type._fields)  # type: ignore[attr-defined]  # see E
    try:
        _check_shape(section, _COMPACT_KEYS)
        if section["columns"] != fields:
            raise _Invalid("columns", f"must be {orjson.dumps(fields).decode()}, the fields in this order")
        if type(section["blocks"]) is not list:
            raise _Invalid("blocks", "must be a list of strings")
    except _Invalid as exc:
        raise SnapshotError(f"{key}.{exc.key}" if exc.key else key, exc.problem) from None
    blocks = section["blocks"]
    try:
        found: list[Any] = list(map(cache.get, blocks))  # TypeError for a list or an object among the blocks
        new = list(compress(count(), map(is_, found, repeat(None))))
        built = _new_blocks(list(map(blocks.__getitem__, new)), len(fields), _COLUMN_BUILDERS[entry_type], build)
    except (TypeError, ValueError, _Invalid):
        return _compact_entries_one_by_one(blocks, key, fields, build)
    for index, block in zip(new, built, strict=True):
        found[index] = block
    if any(map(le, map(attrgetter("first"), islice(found, 1, None)), map(attrgetter("last"), found))):
        return _compact_entries_one_by_one(blocks, key, fields, build)
    if new and cache:
        listed = set(blocks)
        found = _reuse_entries(found, new, [block for text, block in cache.items() if text not in listed])
    cache.clear()
    cache.update(zip(blocks, found, strict=True))
    return tuple(chain.from_iterable(map(attrgetter("entries"), found)))


def _reuse_entries(found: list[_Block], new: list[int], gone: list[_Block]) -> list[_Block]:
    """Return found with the entries of its new blocks that the gone blocks held as those very objects.

    An edit rewrites a whole block, but compile_policy tells unchanged entries by identity, so
    the block's other entries must stay the objects in force. Datetimes equal in another zone
    are other text, so the key holds their offsets too.
    """
    previous = {_exact(entry): entry for block in gone for entry in block.entries}
    found = found[:]
    for index in new:
        block = found[index]
        entries = tuple(previous.get(_exact(entry), entry) for entry in block.entries)
        found[index] = block._replace(entries=entries)
    return found


def _exact(entry: tuple[Any, ...]) -> tuple[Any, ...]:
    return entry, *(value.utcoffset() for value in entry if type(value) is datetime)


def _new_blocks(
    texts: list[str], width: int, build_columns: _ColumnBuilder, build: Callable[[tuple[Any, ...]], E]
) -> list[_Block]:
    """Validate blocks of a compact list, in C loops where they can; raise TypeError, ValueError or _Invalid."""
    if not _STR.issuperset(map(type, texts)):
        raise TypeError
    decoded = list(map(orjson.loads, texts))  # orjson.JSONDecodeError is a ValueError
    joined: list[list[Any]] = [[] for _ in range(width)]  # the columns of all the blocks
    for columns in decoded:
        if type(columns) is not list or len(columns) != width or not columns[0]:
            raise TypeError
        for column, values in zip(joined, columns, strict=True):
            if type(values) is not list or len(values) != len(columns[0]):
                raise TypeError
            column += values
    try:
        entries, order = build_columns(joined)
    except (TypeError, ValueError):
        # An entry the column validators are unsure of: each block again, the one holding it entry by entry.
        entries = list(chain.from_iterable(_block_entries(columns, build_columns, build) for columns in decoded))
        order = list(map(network_order, map(attrgetter("network"), entries)))
    # The order may only drop where one block ends and the next begins; blocks are checked against each other after.
    ends = {len(entries) - 1}
    start = 0
    blocks = []
    for columns in decoded:
        end = start + len(columns[0])
        blocks.append(_Block(tuple(entries[start:end]), order[start], order[end - 1]))
        ends.add(end - 1)
        start = end
    if not ends.issuperset(compress(count(), map(not_, map(lt, order, islice(order, 1, None))))):
        raise ValueError
    return blocks


def _block_entries(
    columns: list[list[Any]], build_columns: _ColumnBuilder, build: Callable[[tuple[Any, ...]], E]
) -> list[Any]:
    try:
        return build_columns(columns)[0]
    except (TypeError, ValueError):
        return list(map(build, zip(*columns, strict=True)))


def _compact_entries_one_by_one(
    blocks: list[Any], key: str, fields: list[str], build: Callable[[tuple[Any, ...]], E]
) -> tuple[E, ...]:
    """Validate a compact list entry by entry; raise SnapshotError naming the first problem."""
    entries: list[Any] = []
    for index, text in enumerate(blocks):
        path = f"{key}.blocks[{index}]"
        if type(text) is not str:
            raise SnapshotError(path, "must be a string: the JSON text of the block's columns")
        try:
            columns = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            raise SnapshotError(path, f"not valid JSON: {exc}") from None
        if (
            type(columns) is not list
            or len(columns) != len(fields)
            or any(type(column) is not list for column in columns)
            or len(set(map(len, columns))) != 1
            or not columns[0]
        ):
            raise SnapshotError(path, f"must be {len(fields)} lists, one per column, of one length and not empty")
        for row in zip(*columns, strict=True):
            try:
                entry: Any = build(row)  # a network entry: see E
            except _Invalid as exc:
                raise SnapshotError(f"{key}[{len(entries)}].{exc.key}", exc.problem) from None
            if entries and network_order(entry.network) <= network_order(entries[-1].network):
                raise SnapshotError(
                    f"{key}[{len(entries)}].network",
                    f"{entry.network} comes after {entries[-1].network}: a compact list holds each network once,"
                    " IPv4 first, then by first address, then by prefix length",
                )
            entries.append(entry)
    return tuple(entries)


# A column builder validates the columns of a list's entries and returns the entries and the
# network_order of each.
_ColumnBuilder = Callable[[list[list[Any]]], tuple[list[Any], list[int]]]


def _trusted_columns(columns: list[list[Any]]) -> tuple[list[TrustedNetwork], list[int]]:
    ids, texts, descriptions, expires_at, added_by, added_at = columns
    networks, orders = parse_networks(texts)
    entries = list(
        map(
            tuple.__new__,
            repeat(TrustedNetwork),
            zip(
                _positive_ints(ids),
                networks,
                _strings(descriptions),
                _optional_timestamps(expires_at),
                _strings(added_by),
                _timestamps(added_at),
                strict=True,
            ),
        )
    )
    return entries, orders


def _denied_columns(columns: list[list[Any]]) -> tuple[list[DeniedNetwork], list[int]]:
    ids, texts, descriptions, added_by, added_at = columns
    networks, orders = parse_networks(texts)
    entries = list(
        map(
            tuple.__new__,
            repeat(DeniedNetwork),
            zip(
                _positive_ints(ids),
                networks,
                _strings(descriptions),
                _strings(added_by),
                _timestamps(added_at),
                strict=True,
            ),
        )
    )
    return entries, orders


_COLUMN_BUILDERS: dict[type, _ColumnBuilder] = {
    TrustedNetwork: _trusted_columns,
    DeniedNetwork: _denied_columns,
}

# The column validators below accept exactly what their one-value twins further down accept,
# and raise ValueError where those would name a problem.


def _positive_ints(column: list[Any]) -> list[int]:
    if not _INT.issuperset(map(type, column)) or min(column, default=1) < 1:
        raise ValueError
    return column


def _strings(column: list[Any]) -> list[str]:
    if not _STR.issuperset(map(type, column)):
        raise ValueError
    return column


def _timestamps(column: list[Any]) -> list[datetime]:
    moments = list(map(datetime.fromisoformat, _strings(column)))
    if any(map(is_, map(attrgetter("tzinfo"), moments), repeat(None))):
        raise ValueError
    return moments


def _optional_timestamps(column: list[Any]) -> list[datetime | None]:
    present = list(map(is_not, column, repeat(None)))
    # Each value takes None or the next timestamp, in order.
    sources = (repeat(None), iter(_timestamps(list(compress(column, present)))))
    return list(map(next, map(sources.__getitem__, present)))


def _refuse_duplicates(key: str, field: str, values: list[str]) -> None:
    seen: dict[str, int] = {}
    for index, value in enumerate(values):
        if value in seen:
            raise SnapshotError(f"{key}[{index}].{field}", f"duplicate of {key}[{seen[value]}]")
        seen[value] = index


# The network builders make their NamedTuples with tuple.__new__, which skips the NamedTuple's
# Python-level __new__: a cold reload makes 100,000 of them.


def _trusted_network(row: tuple[Any, ...]) -> TrustedNetwork:
    id_, network, description, expires_at, added_by, added_at = row
    return tuple.__new__(
        TrustedNetwork,
        (
            _positive_int(id_, "id"),
            _network(network, "network"),
            _string(description, "description"),
            _optional_timestamp(expires_at, "expires_at"),
            _string(added_by, "added_by"),
            _timestamp(added_at, "added_at"),
        ),
    )


def _denied_network(row: tuple[Any, ...]) -> DeniedNetwork:
    id_, network, description, added_by, added_at = row
    return tuple.__new__(
        DeniedNetwork,
        (
            _positive_int(id_, "id"),
            _network(network, "network"),
            _string(description, "description"),
            _string(added_by, "added_by"),
            _timestamp(added_at, "added_at"),
        ),
    )


def _internal_address(row: tuple[Any, ...]) -> InternalAddress:
    id_, address, description = row
    return InternalAddress(_positive_int(id_, "id"), _address(address, "address"), _string(description, "description"))


def _local_domain(row: tuple[Any, ...]) -> LocalDomain:
    domain, include_subdomains, route = row
    return LocalDomain(
        _domain(domain, "domain"), _boolean(include_subdomains, "include_subdomains"), _route(route, "route")
    )


_PROFILES_KEYS = _keys("trusted_networks", "smtp_users")
_PROFILE_FIELDS = Profile._fields
_TRUSTED_PROFILE_KEYS = _keys("id", *_PROFILE_FIELDS)
_USER_PROFILE_KEYS = _keys("username", *_PROFILE_FIELDS)


def _profiles(value: object, snapshot: Snapshot) -> Profiles:
    """Validate the profiles; each names a trusted network (by id) or SMTP user of this snapshot, once."""
    try:
        value = _check_shape(value, _PROFILES_KEYS)
    except _Invalid as exc:
        raise SnapshotError(f"profiles.{exc.key}" if exc.key else "profiles", exc.problem) from None
    network_ids = {entry.id for entry in snapshot.trusted_networks}
    usernames = {entry.username for entry in snapshot.smtp_users}
    by_network = _profile_list(value, "trusted_networks", "id", _TRUSTED_PROFILE_KEYS, network_ids)
    by_user = _profile_list(value, "smtp_users", "username", _USER_PROFILE_KEYS, usernames)
    return Profiles(MappingProxyType(by_network), MappingProxyType(by_user))


def _profile_list(value: dict[str, Any], key: str, name: str, keys: Any, known: set[Any]) -> dict[Any, Profile]:
    items = value[key]
    path = f"profiles.{key}"
    if type(items) is not list:
        raise SnapshotError(path, "must be a list")
    profiles: dict[Any, Profile] = {}
    for index, item in enumerate(items):
        try:
            _check_shape(item, keys)
            owner = item[name]
            if type(owner) is not (int if name == "id" else str) or owner not in known:
                raise _Invalid(name, f"{owner!r} is not one of this snapshot's {key}")
            if owner in profiles:
                raise _Invalid(name, f"{owner!r} has a profile already")
            profiles[owner] = _profile(item)
        except _Invalid as exc:
            raise SnapshotError(f"{path}[{index}].{exc.key}" if exc.key else f"{path}[{index}]", exc.problem) from None
    return profiles


def _profile(item: dict[str, Any]) -> Profile:
    domains = item["allowed_sender_domains"]
    if type(domains) is not list:
        raise _Invalid("allowed_sender_domains", "must be a list of domains")
    for domain in domains:
        _domain(domain, "allowed_sender_domains")
    return Profile(
        _optional_positive_int(item["rate_limit_per_hour"], "rate_limit_per_hour"),
        _optional_positive_int(item["recipients_per_hour"], "recipients_per_hour"),
        tuple(domains),
        _boolean(item["require_tls"], "require_tls"),
        _string(item["owner"], "owner"),
        _string(item["ticket"], "ticket"),
    )


def _optional_positive_int(value: object, key: str) -> int | None:
    return None if value is None else _positive_int(value, key)


def _smtp_user(row: tuple[Any, ...]) -> SmtpUser:
    username, password_hash = row
    username = _string(username, "username")
    if not username:
        raise _Invalid("username", "must not be empty")
    password_hash = _string(password_hash, "password_hash")
    try:
        parse_password_hash(password_hash)
    except ValueError as exc:
        raise _Invalid("password_hash", str(exc)) from None
    return SmtpUser(username, password_hash)


def _positive_int(value: object, key: str) -> int:
    if type(value) is not int or value < 1:
        raise _Invalid(key, "must be a positive integer")
    return value


def _boolean(value: object, key: str) -> bool:
    if type(value) is not bool:
        raise _Invalid(key, "must be true or false")
    return value


def _string(value: object, key: str) -> str:
    if type(value) is not str:
        raise _Invalid(key, "must be a string")
    return value


def _timestamp(value: object, key: str) -> datetime:
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


def _optional_timestamp(value: object, key: str) -> datetime | None:
    return None if value is None else _timestamp(value, key)


def _network(value: object, key: str) -> Network:
    try:
        return parse_network(_string(value, key))
    except ValueError as exc:
        raise _Invalid(key, str(exc)) from None


def _address(value: object, key: str) -> Address:
    try:
        return parse_host_address(_string(value, key))
    except ValueError as exc:
        raise _Invalid(key, str(exc)) from None


_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_DOMAIN = re.compile(rf"{_LABEL}(?:\.{_LABEL})*", re.ASCII)
_HOSTNAME = re.compile(rf"{_LABEL}(?:\.{_LABEL})*", re.ASCII | re.IGNORECASE)


def _domain(value: object, key: str) -> str:
    value = _string(value, key)
    if not value.isascii():
        raise _Invalid(key, f"{value!r} is not ASCII: write an IDN as punycode (xn--...)")
    if value.endswith("."):
        raise _Invalid(key, f"{value!r} ends with a dot: write it as {value.rstrip('.')!r}")
    if value != value.lower():
        raise _Invalid(key, f"{value!r} is not lowercase: write it as {value.lower()!r}")
    if len(value) > 253 or not _DOMAIN.fullmatch(value):
        raise _Invalid(key, f"{value!r} is not a domain name (labels of 1-63 letters, digits and inner hyphens)")
    return value


def _route(value: object, key: str) -> str | None:
    """Validate a next hop written host:port, [ipv6]:port, or null for none of its own."""
    if value is None:
        return None
    if type(value) is not str:
        raise _Invalid(key, "must be host:port or null")
    try:
        hop = split_host_port(value)
    except ValueError as exc:
        raise _Invalid(key, str(exc)) from None
    if hop.bracketed:
        _route_address(key, hop.host, 6)
    elif DOTTED_NUMBERS.fullmatch(hop.host):
        _route_address(key, hop.host, 4)
    elif len(hop.host) > 253 or not _HOSTNAME.fullmatch(hop.host):
        raise _Invalid(key, f"{value!r}: {hop.host!r} is not a host name")
    return value


def _route_address(key: str, text: str, version: int) -> None:
    try:
        address = parse_host_address(text)
    except ValueError as exc:
        raise _Invalid(key, f"next hop {text!r}: {exc}") from None
    if address.version != version:
        raise _Invalid(key, f"next hop {text!r}: write IPv6 addresses in brackets and IPv4 addresses without")
