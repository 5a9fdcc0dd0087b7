"""Parse IP addresses and networks, and compile network lists into sets searchable in O(log n)."""

from __future__ import annotations

import ipaddress
from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, MutableSequence, Sequence
from datetime import datetime
from itertools import accumulate, compress, islice, repeat
from operator import add, and_, attrgetter, contains, eq, itemgetter, lshift, lt, or_, rshift, sub
from socket import AF_INET, AF_INET6, inet_ntop, inet_pton
from typing import Any, Generic, NamedTuple, TypeVar

T = TypeVar("T")

_FAMILIES = {4: (AF_INET, 32), 6: (AF_INET6, 128)}
# Prefix lengths as written canonically: int() would also take " 8", "+8", "08", "0_8" and non-ASCII digits.
_PREFIX_LENGTHS = {str(length): length for length in range(129)}
# The host mask of a network with this many host bits.
_HOST_MASKS = tuple((1 << bits) - 1 for bits in range(129))
# IPv4-mapped IPv6 addresses (::ffff:0:0/96) are those whose value shifted right 32 bits is 0xffff.
_MAPPED = 0xFFFF


class Address(NamedTuple):
    """An IP address as its version (4 or 6) and integer value."""

    version: int
    value: int

    def __str__(self) -> str:
        if self.version == 4:
            # As ipaddress writes it, in a tenth of the time: relayd formats a client for every session.
            return inet_ntop(AF_INET, self.value.to_bytes(4))
        return str(ipaddress.IPv6Address(self.value))


class Network(NamedTuple):
    """A CIDR network as its normalised text and the integer range it covers."""

    text: str
    version: int
    first: int
    last: int
    prefixlen: int

    def __str__(self) -> str:
        return self.text


def parse_address(address: str | Address | ipaddress.IPv4Address | ipaddress.IPv6Address) -> Address:
    """Return a client or local address as an Address; raise ValueError if it is not one.

    An IPv4-mapped IPv6 address (::ffff:10.1.2.3) is the IPv4 address it maps: a dual-stack
    listener reports IPv4 clients that way, and they must match IPv4 networks. An IPv6 zone
    (fe80::1%eth0) is dropped because policy entries never carry one.
    """
    if type(address) is Address:
        # Parsed already: the session parses its client once and hands the result on.
        return address
    if isinstance(address, ipaddress.IPv4Address):
        return Address(4, int(address))
    if isinstance(address, ipaddress.IPv6Address):
        value = int(address)
    elif not isinstance(address, str):
        raise ValueError(f"{address!r} is not an IP address")
    elif ":" in address:
        try:
            value = int.from_bytes(inet_pton(AF_INET6, address.partition("%")[0]))
        except OSError:
            raise ValueError(f"{address!r} is not an IP address") from None
    else:
        try:
            return Address(4, int.from_bytes(inet_pton(AF_INET, address)))
        except OSError:
            raise ValueError(f"{address!r} is not an IP address") from None
    if value >> 32 == _MAPPED:
        return Address(4, value & 0xFFFFFFFF)
    return Address(6, value)


def parse_host_address(text: str) -> Address:
    """Return a normalised single address (no prefix) as an Address; raise ValueError naming the fix."""
    if "/" in text:
        raise ValueError(f"must be a single address without a prefix length, e.g. {text.partition('/')[0]}")
    version, packed = _pack(text)
    value = int.from_bytes(packed)
    if version == 6 and value >> 32 == _MAPPED:
        raise ValueError(f"IPv4-mapped IPv6 address: write it as IPv4 ({ipaddress.IPv4Address(value & 0xFFFFFFFF)})")
    if not _is_normalised(version, text, packed):
        raise ValueError(f"not normalised: write it as {address_text(version, value)}")
    return Address(version, value)


def parse_network(text: str) -> Network:
    """Return a normalised CIDR network as a Network; raise ValueError naming the fix."""
    address, slash, length = text.partition("/")
    if not slash:
        raise ValueError(f"missing prefix length: write a single host as {text}/32 or {text}/128")
    version, packed = _pack(address)
    bits = 32 if version == 4 else 128
    prefixlen = _PREFIX_LENGTHS.get(length, 129)
    if prefixlen > bits:
        raise ValueError(f"prefix length must be a whole number from 0 to {bits}")
    value = int.from_bytes(packed)
    hostmask = _HOST_MASKS[bits - prefixlen]
    if version == 6 and prefixlen >= 96 and value >> 32 == _MAPPED:
        ipv4 = ipaddress.IPv4Network((value & 0xFFFFFFFF, prefixlen - 96), strict=False)
        raise ValueError(f"IPv4-mapped IPv6 network: write it as IPv4 ({ipv4})")
    if value & hostmask:
        raise ValueError(f"host bits set: did you mean {network_text(version, value & ~hostmask, prefixlen)}?")
    if not _is_normalised(version, address, packed):
        raise ValueError(f"not normalised: write it as {network_text(version, value, prefixlen)}")
    # tuple.__new__ skips the Python-level __new__ of the NamedTuple: a reload makes 100,000.
    return tuple.__new__(Network, (text, version, value, value | hostmask, prefixlen))


def parse_networks(texts: list[str]) -> tuple[list[Network], list[int]]:
    """Return the Networks of texts as parse_network does, and their network_order; raise ValueError at any doubt.

    At 100,000 networks parse_network's Python per entry is most of a cold reload. Here each step
    runs over a whole column, in C loops: what it cannot settle so (a bad or unusual entry, such
    as a ::ffff:0:0/96 network, or IPv4 after IPv6, out of network order) raises, and the caller
    parses the texts one by one, which names the problem.
    """
    if type(texts) is not list or not _STR.issuperset(map(type, texts)):
        raise ValueError("not a list of strings")
    # Where IPv6 begins is found in a few steps; if the families are mixed after all, one of them
    # holds a text of the other, which inet_pton refuses.
    ipv4 = bisect_left(texts, True, key=_is_ipv6)
    networks4, orders4 = _parse_family(texts[:ipv4], 4)
    networks6, orders6 = _parse_family(texts[ipv4:], 6)
    return networks4 + networks6, orders4 + orders6


_STR = frozenset({str})


def _is_ipv6(text: str) -> bool:
    return ":" in text


def _parse_family(texts: list[str], version: int) -> tuple[list[Network], list[int]]:
    """Return the Networks of texts, all of one IP version, and their network_order (see parse_networks)."""
    family, bits = _FAMILIES[version]
    parts = list(map(str.partition, texts, repeat("/")))
    addresses = list(map(itemgetter(0), parts))
    try:
        packed = list(map(inet_pton, repeat(family), addresses))
    except OSError:
        raise ValueError("not an address") from None
    # Canonical text only, as _is_normalised, whose slow path settles IPv6 text with a dotted tail.
    if list(map(inet_ntop, repeat(family), packed)) != addresses or (
        version == 6 and any(map(contains, addresses, repeat(".")))
    ):
        raise ValueError("not normalised")
    prefixlens = list(map(_PREFIX_LENGTHS.get, map(itemgetter(2), parts), repeat(129)))
    if max(prefixlens, default=0) > bits:  # also a missing "/", whose length reads as 129
        raise ValueError("bad prefix length")
    values = list(map(int.from_bytes, packed))
    masks = list(map(_HOST_MASKS.__getitem__, map(sub, repeat(bits), prefixlens)))
    if any(map(and_, values, masks)):
        raise ValueError("host bits set")
    if version == 6 and _MAPPED in map(rshift, values, repeat(32)):
        raise ValueError("IPv4-mapped")
    lasts = map(or_, values, masks)
    networks = list(map(tuple.__new__, repeat(Network), zip(texts, repeat(version), values, lasts, prefixlens)))
    # network_order, in C.
    orders = list(map(or_, map(or_, map(lshift, values, repeat(8)), prefixlens), repeat(version << 136)))
    return networks, orders


def network_order(network: Network) -> int:
    """Return the key of the order of a compact snapshot list: IPv4 first, then as _sort_key orders a version.

    That is by first address, then by prefix length: a network sorts after every network enclosing
    it, the order NetworkSet builds its tables in, so it slices such a list rather than sorting it.
    """
    return network.version << 136 | network.first << 8 | network.prefixlen


def _pack(text: str) -> tuple[int, bytes]:
    """Return the version and packed bytes of an address in any notation inet_pton accepts."""
    version = 6 if ":" in text else 4
    try:
        return version, inet_pton(_FAMILIES[version][0], text)
    except OSError:
        raise ValueError(f"{text!r} is not a valid IPv{version} address") from None


def _is_normalised(version: int, text: str, packed: bytes) -> bool:
    """Return whether text is the canonical spelling of the packed address (see address_text)."""
    if version == 4:
        return inet_ntop(AF_INET, packed) == text
    # inet_ntop is an order of magnitude faster than address_text and prints the same text,
    # except that glibc writes ::/96 and ::ffff:0:0/96 addresses with a dotted IPv4 tail.
    if "." not in text and inet_ntop(AF_INET6, packed) == text:
        return True
    return address_text(6, int.from_bytes(packed)) == text


def address_text(version: int, value: int) -> str:
    """Return the one canonical text of an address, which the dashboard stores and the validator requires.

    IPv4 is dotted decimal without leading zeros. IPv6 is RFC 5952 text (lowercase hex, no
    leading zeros, the longest run of two or more zero groups, the first of equals, as "::")
    and always all hex: never a dotted IPv4 tail, whose use differs between libraries
    (netaddr writes ::a:b as ::0.10.0.11) and Python versions (ipaddress from 3.13 writes
    IPv4-mapped addresses dotted). So ::1.2.3.4 is ::102:304 and 64:ff9b::1.2.3.4 is 64:ff9b::102:304.
    """
    if version == 4:
        return inet_ntop(AF_INET, value.to_bytes(4))
    groups = [f"{value >> shift & 0xFFFF:x}" for shift in range(112, -16, -16)]
    best_start, best_length, start = 0, 0, None
    for index, group in enumerate([*groups, "end"]):
        if group == "0":
            start = index if start is None else start
            continue
        if start is not None and index - start > best_length:
            best_start, best_length = start, index - start
        start = None
    if best_length < 2:
        return ":".join(groups)
    return ":".join(groups[:best_start]) + "::" + ":".join(groups[best_start + best_length :])


def network_text(version: int, first: int, prefixlen: int) -> str:
    """Return the one canonical text of a network: its first address (address_text), a slash and its prefix length."""
    return f"{address_text(version, first)}/{prefixlen}"


class NetworkSet(Generic[T]):
    """Find the most specific entry whose network contains an address, in O(log n).

    At build time the networks of each IP version, which CIDR blocks make either disjoint or
    nested, are flattened into segments that tile the whole address space: each starts where
    the most specific covering entry changes and holds that entry's payload, or None in a gap.
    A lookup is then a bisect over the segment starts, with no per-entry work. Where the most
    specific entry expires, the segment keeps the entries around it too, so an expired /24 falls
    back to the /8 it sits in. updated() makes the set of a slightly changed list of entries
    from this one, flattening again only the blocks that changed.
    """

    __slots__ = ("_duplicates", "_size", "_sorted", "_tables")

    def __init__(self, entries: Iterable[tuple[Network, T, datetime | None]]) -> None:
        """Compile (network, payload, expires_at) triples; expires_at None means the entry never expires."""
        columns = [list(column) for column in zip(*entries, strict=True)] or [[], [], []]
        self._build(*columns)

    @classmethod
    def from_columns(
        cls, networks: Sequence[Network], payloads: Sequence[T], expires: Sequence[datetime | None]
    ) -> NetworkSet[T]:
        """Compile entries given as three columns, as NetworkSet() does its triples, without first making them."""
        networks_set = object.__new__(cls)
        networks_set._build(networks, payloads, expires)
        return networks_set

    def _build(self, networks: Sequence[Network], payloads: Sequence[T], expires: Sequence[datetime | None]) -> None:
        # Columns are pulled out with map() and attrgetter, which loop in C: at 100,000 entries a
        # Python loop over them costs more than the rest of the build.
        firsts = list(map(attrgetter("first"), networks))
        lasts = list(map(attrgetter("last"), networks))
        # _sort_key of each network, computed in C.
        keys = list(map(or_, map(lshift, firsts, repeat(8)), map(attrgetter("prefixlen"), networks)))
        versions = list(map(attrgetter("version"), networks))
        ipv4 = versions.count(4)
        # Entries in order already, IPv4 first and each network once, as compact lists are
        # (relayd/compact.py), are sliced rather than sorted.
        in_order = (
            versions[:ipv4].count(4) == ipv4
            and all(map(lt, islice(keys, ipv4), islice(keys, 1, ipv4)))
            and all(map(lt, islice(keys, ipv4, None), islice(keys, ipv4 + 1, None)))
        )
        self._size = len(keys)
        self._sorted: dict[int, _Sorted] = {}
        self._tables: dict[int, _Segments] = {}
        for version, rows in ((4, slice(0, ipv4)), (6, slice(ipv4, len(keys)))):
            if in_order:
                columns = _Sorted(*(list(column[rows]) for column in (keys, firsts, lasts, payloads, expires)))
            else:
                order = list(compress(range(len(keys)), map(eq, versions, repeat(version))))
                # Stable: duplicates stay in snapshot order, so the later one nests in the earlier.
                order.sort(key=keys.__getitem__)
                columns = _Sorted(
                    *(list(map(column.__getitem__, order)) for column in (keys, firsts, lasts, payloads, expires))
                )
            starts, values = _segments(columns, 0, len(columns.keys), 0)
            self._sorted[version] = columns
            self._tables[version] = _index(version, starts, values)
        # updated() keeps duplicates in the order they had, which need not be the new snapshot's.
        self._duplicates = not in_order and any(
            any(map(eq, islice(columns.keys, 1, None), columns.keys)) for columns in self._sorted.values()
        )

    def lookup(self, address: Address, now: datetime) -> T | None:
        """Return the payload of the most specific entry containing address and unexpired at now, or None."""
        version, value = address
        starts, values, shift, base, buckets, bucket_count = self._tables[version]
        bucket = (value >> shift) - base
        if 0 <= bucket < bucket_count:
            segment = bisect_right(starts, value, buckets[bucket], buckets[bucket + 1]) - 1
        else:
            segment = bisect_right(starts, value) - 1
        found: T | _Expiring = values[segment]
        if isinstance(found, _Expiring):
            payload: T | None = found.resolve(now)
            return payload
        return found

    def __len__(self) -> int:
        """Return the number of entries."""
        return self._size

    def updated(
        self,
        removed: Iterable[tuple[Network, T, datetime | None]],
        added: Iterable[tuple[Network, T, datetime | None]],
    ) -> NetworkSet[T] | None:
        """Return a copy without the removed entries (the same payload objects) and with the added ones.

        It equals NetworkSet() of the new entries, but only the outermost CIDR blocks around the
        changes are flattened again: a few changes among 100,000 networks cost a copy of the tables,
        a tenth of a build. Return None where only a full build gives that result: where a removed
        entry is not in the set, or either set has two entries with the same network, which nest
        in snapshot order.
        """
        if self._duplicates:
            return None
        changes: dict[int, tuple[list[_Triple], list[_Triple]]] = {4: ([], []), 6: ([], [])}
        for index, triples in enumerate((removed, added)):
            for triple in triples:
                changes[triple[0].version][index].append(triple)
        updated = object.__new__(NetworkSet)
        updated._duplicates = False
        updated._size = self._size
        updated._sorted = dict(self._sorted)
        updated._tables = dict(self._tables)
        for version, (gone, new) in changes.items():
            if gone or new:
                result = _update(version, self._sorted[version], self._tables[version], gone, new)
                if result is None:
                    return None
                updated._sorted[version], updated._tables[version] = result
                updated._size += len(new) - len(gone)
        return updated


def _sort_key(first: int, prefixlen: int) -> int:
    """Order networks by start address, then prefix length: a network sorts after every network enclosing it."""
    return first << 8 | prefixlen


class _Sorted(NamedTuple):
    """The entries of one IP version as columns, sorted by _sort_key."""

    keys: list[int]
    firsts: list[int]
    lasts: list[int]
    payloads: list[Any]
    expires: list[datetime | None]


# The segments of one IP version: (starts, values, shift, base, buckets, bucket count). Segments
# buckets[k] to buckets[k + 1] start inside bucket k, which holds addresses (base + k) << shift onwards.
# A plain tuple, because the lookup unpacks it and CPython unpacks exact tuples fastest.
_Segments = tuple[MutableSequence[int], list[Any], int, int, Sequence[int], int]
# A network, its payload and when it expires (None: never).
_Triple = tuple[Network, Any, datetime | None]


def _index(version: int, starts: list[int], values: list[Any]) -> _Segments:
    """Lay the segments out for fast lookups."""
    # A bisect over 100,000 ints is bound by memory reads, so two things cut them. An array keeps
    # IPv4 starts contiguous; IPv6 ints do not fit one, but copying them allocates them in order.
    packed: MutableSequence[int] = array("Q", starts) if version == 4 else [start + 0 for start in starts]
    # Then a table of up to 65,536 buckets over the bits just below the prefix that all listed
    # networks share (all of IPv4; a site's 2001:db8::/32 in IPv6) sends a lookup straight to the
    # few segments in its bucket; addresses outside the buckets take the plain bisect.
    bits = min(16, max(len(starts).bit_length() - 2, 0))  # about four segments a bucket
    listed_span = (starts[1] ^ starts[-1]).bit_length() if len(starts) > 1 else 0
    shift = max(listed_span - bits, 0)
    base = starts[min(1, len(starts) - 1)] >> shift
    buckets = array("L", _bucket_bounds(starts, shift, base, 0, (1 << bits) + 1))
    return packed, values, shift, base, buckets, 1 << bits


def _bucket_bounds(starts: Sequence[int], shift: int, base: int, low: int, high: int) -> Iterable[int]:
    """Return the index of the first segment in each of the buckets low to high - 1."""
    return map(bisect_left, repeat(starts), map(lshift, range(base + low, base + high), repeat(shift)))


def _segments(entries: _Sorted, low: int, high: int, start: int) -> tuple[list[int], list[Any]]:
    """Return the segments (starts and values) that tile the address space from start with entries[low:high].

    Those entries must be whole CIDR blocks: no entry outside them encloses one of them.
    """
    _, firsts, lasts, payloads, expires = entries
    starts = [start]
    owners = [-1]  # the index of the most specific entry covering each segment, or -1
    parents = {}  # the index of the innermost entry enclosing each entry that expires
    stack: list[int] = []  # the entries enclosing the current address, innermost last
    # _resume is written out twice in this loop, which runs once per entry: the calls cost a tenth of a build.
    for index in range(low, high):
        first = firsts[index]
        while stack and lasts[stack[-1]] < first:
            end = lasts[stack.pop()] + 1
            owner = stack[-1] if stack else -1
            if starts[-1] == end:
                owners[-1] = owner
            else:
                starts.append(end)
                owners.append(owner)
        if expires[index] is not None:
            parents[index] = stack[-1] if stack else -1
        stack.append(index)
        if starts[-1] == first:
            owners[-1] = index
        else:
            starts.append(first)
            owners.append(index)
    while stack:
        _resume(starts, owners, lasts[stack.pop()] + 1, stack[-1] if stack else -1)
    # The value of each entry's segments, by index; owner -1 (a gap) reads the None at the end.
    values = payloads[:high]
    values.append(None)
    for index in parents:
        values[index] = _Expiring.collect(index, payloads, expires, parents)
    return starts, list(map(values.__getitem__, owners))


def _resume(starts: list[int], owners: list[int], start: int, owner: int) -> None:
    """Begin a segment owned by owner at start, replacing the last segment if it would be empty."""
    if starts[-1] == start:
        owners[-1] = owner
    else:
        starts.append(start)
        owners.append(owner)


def _update(
    version: int, old: _Sorted, table: _Segments, removed: list[_Triple], added: list[_Triple]
) -> tuple[_Sorted, _Segments] | None:
    """Return the sorted entries and segments of one IP version with the changes made, or None (see updated)."""
    entries = _Sorted(*(list(column) for column in old))
    keys = entries.keys
    columns: tuple[list[Any], ...] = entries  # the columns of _Sorted, of differing types, edited in place
    blocks = []
    for network, payload, _ in removed:
        key = _sort_key(network.first, network.prefixlen)
        index = bisect_left(keys, key)
        if bisect_right(keys, key) != index + 1 or entries.payloads[index] is not payload:
            return None
        blocks.append(_outermost(old.keys, network))
        for column in columns:
            del column[index]
    for network, payload, expires_at in added:
        key = _sort_key(network.first, network.prefixlen)
        index = bisect_left(keys, key)
        if index < len(keys) and keys[index] == key:
            return None
        for column, value in zip(columns, (key, network.first, network.last, payload, expires_at), strict=True):
            column.insert(index, value)
    blocks += [_outermost(keys, network) for network, _, _ in added]
    starts, values, shift, base, buckets, bucket_count = table
    starts = starts[:]
    values = values[:]
    # Each changed block is flattened again and its segments spliced in, from the highest down
    # so that the indexes below a block stay valid. A bucket bound above a block moves by the
    # number of segments the block gained; one inside it is looked up again.
    moved = [0] * (bucket_count + 2)
    inside = []
    for first, last in _outermost_blocks(blocks):
        low = bisect_left(keys, _sort_key(first, 0))
        high = bisect_left(keys, _sort_key(last + 1, 0))
        block_starts, block_values = _segments(entries, low, high, first)
        # What follows a block is the segment the table has there, or else a gap.
        splice_start = bisect_left(starts, first)
        splice_end = bisect_left(starts, last + 1)
        if splice_end < len(starts) and starts[splice_end] == last + 1 and block_starts[-1] == last + 1:
            del block_starts[-1], block_values[-1]
        starts[splice_start:splice_end] = array("Q", block_starts) if version == 4 else block_starts
        values[splice_start:splice_end] = block_values
        above = _first_bucket_above(last + 1, shift, base, bucket_count)
        moved[above] += len(block_starts) - (splice_end - splice_start)
        inside.append((_first_bucket_above(first, shift, base, bucket_count), above))
    buckets = array("L", map(add, buckets, accumulate(moved)))
    for low, high in inside:
        buckets[low:high] = array("L", _bucket_bounds(starts, shift, base, low, high))
    return entries, (starts, values, shift, base, buckets, bucket_count)


def _first_bucket_above(address: int, shift: int, base: int, bucket_count: int) -> int:
    """Return the first k (from 0 to bucket_count + 1) whose bucket bound (base + k) << shift is above address."""
    return min(max((address >> shift) - base + 1, 0), bucket_count + 1)


def _outermost(keys: list[int], network: Network) -> tuple[int, int]:
    """Return the (first, last) of the outermost network in keys that encloses network, or of network itself."""
    bits = _FAMILIES[network.version][1]
    for prefixlen in range(network.prefixlen):
        first = network.first >> (bits - prefixlen) << (bits - prefixlen)
        key = _sort_key(first, prefixlen)
        index = bisect_left(keys, key)
        if index < len(keys) and keys[index] == key:
            return first, first | ((1 << (bits - prefixlen)) - 1)
    return network.first, network.last


def _outermost_blocks(blocks: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Return the blocks not inside another, highest first; CIDR blocks are either nested or disjoint."""
    outermost: list[tuple[int, int]] = []
    for first, last in sorted(blocks, key=lambda block: (block[0], -block[1])):
        if not outermost or first > outermost[-1][1]:
            outermost.append((first, last))
    return outermost[::-1]


class _Expiring:
    """The entries covering a segment whose most specific entry expires, innermost first."""

    __slots__ = ("_chain",)

    def __init__(self, chain: list[tuple[datetime | None, object]]) -> None:
        self._chain = chain

    @classmethod
    def collect(
        cls, index: int, payloads: Sequence[Any], expires: Sequence[datetime | None], parents: dict[int, int]
    ) -> _Expiring:
        """Collect the entry at index and its enclosing entries, up to the first that never expires.

        parents holds the index of the innermost entry enclosing each entry that expires, or -1.
        """
        chain = []
        while index >= 0:
            chain.append((expires[index], payloads[index]))
            if expires[index] is None:
                break
            index = parents[index]
        return cls(chain)

    def resolve(self, now: datetime) -> Any:
        """Return the payload of the innermost entry unexpired at now, or None."""
        for expires_at, payload in self._chain:
            if expires_at is None or now < expires_at:
                return payload
        return None
