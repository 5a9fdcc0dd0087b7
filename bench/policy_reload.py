"""Time a relayd policy reload and network lookups at 100,000 networks, and print them next to the targets.

A cold reload has no policy to start from (the daemon starting); a warm reload is given the policy
in force, as the daemon has, and reuses what did not change: the usual reload, of a few changed entries.

The snapshot's network lists are compact (schema 3), as the dashboard publishes them to a fleet
that reads them; --rows times lists of objects (schemas 1 and 2), as an older fleet gets them.

Run: .venv/bin/python bench/policy_reload.py [--networks N] [--lookups N] [--rows [--unordered]]
"""

from __future__ import annotations

import argparse
import copy
import gc
import ipaddress
import json
import os
import random
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import orjson

from relayd.compact import compact_snapshot
from relayd.config import COMPACT_SCHEMA, NETWORK_LISTS, CompiledPolicy, compile_policy, load_snapshot
from relayd.matcher import Address, parse_address
from tests.snapshots import restrictions

# Issue 14's targets.
RELOAD_TARGET_MS = 300
WARM_RELOAD_TARGET_MS = 50
LOOKUP_TARGET_PER_SECOND = 1_000_000
NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


def synthetic_networks(count: int, rng: random.Random) -> list[str]:
    """Return count distinct normalised networks: about 70% IPv4, 30% IPv6, one in ten nested in another."""
    networks: dict[str, None] = {}
    outer: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
    while len(networks) < count:
        if outer and rng.random() < 0.1:
            parent = rng.choice(outer)
            extra = rng.randint(1, 8)
            subnets = 1 << min(extra, parent.max_prefixlen - parent.prefixlen)
            step = parent.num_addresses // subnets
            first = int(parent.network_address) + rng.randrange(subnets) * step
            network = ipaddress.ip_network((first, parent.prefixlen + extra))
        elif rng.random() < 0.7:
            prefixlen = rng.choice((16, 20, 24, 24, 24, 28, 32, 32))
            network = ipaddress.IPv4Network((rng.getrandbits(32), prefixlen), strict=False)
        else:
            prefixlen = rng.choice((32, 48, 48, 56, 64, 64, 128))
            network = ipaddress.IPv6Network(((0x2001 << 112) | rng.getrandbits(112), prefixlen), strict=False)
        if network.version == 6 and network.prefixlen >= 96 and network.network_address.ipv4_mapped:
            continue
        networks.setdefault(str(network))
        if network.prefixlen <= (24 if network.version == 4 else 56):
            outer.append(network)
    return list(networks)


def exporter_order(entry: dict) -> tuple[int, int, int]:
    """Return the sort key of the dashboard's exporter: family, then first and last address (NetworkEntry.Meta)."""
    network = ipaddress.ip_network(entry["network"])
    return network.version, int(network.network_address), int(network.broadcast_address)


def synthetic_snapshot(count: int, rng: random.Random) -> dict:
    """Return a valid snapshot with count networks, 5% of them denied and 5% of the trusted ones expiring.

    The lists are in the exporter's order, as relayd gets them; main() reorders them for --unordered.
    """
    start = datetime(2024, 1, 1, tzinfo=UTC)
    trusted, denied = [], []
    for index, network in enumerate(synthetic_networks(count, rng), start=1):
        added_at = (start + timedelta(seconds=index * 613, microseconds=index)).isoformat()
        entry = {"id": index, "network": network, "description": f"site {index}", "added_by": "alice"}
        if index % 20 == 0:
            denied.append({**entry, "added_at": added_at})
        else:
            expires_at = (NOW + timedelta(days=index % 60 - 30)).isoformat() if index % 20 == 1 else None
            trusted.append({**entry, "expires_at": expires_at, "added_at": added_at})
    return {
        "schema": 1,
        "serial": 1,
        "generated_at": NOW.isoformat(),
        "restrictions": restrictions(allow_authenticated=True, allow_listed_ips=True),
        "trusted_networks": sorted(trusted, key=exporter_order),
        "denied_networks": sorted(denied, key=exporter_order),
        "internal_addresses": [{"id": 1, "address": "192.168.1.10", "description": "LAN interface"}],
        "local_domains": [{"domain": "example.com", "include_subdomains": True, "route": None}],
        "smtp_users": [],
    }


def changed_snapshot(snapshot: dict, changes: int, rng: random.Random) -> dict:
    """Return the next revision of snapshot with about changes entries edited, deleted or added."""
    changed = copy.deepcopy(snapshot)
    changed["serial"] += 1
    trusted, denied = changed["trusted_networks"], changed["denied_networks"]
    next_id = max(entry["id"] for entry in trusted + denied) + 1
    added = synthetic_networks(len(trusted) + len(denied) + changes, random.Random(1))
    taken = {entry["network"] for entry in trusted + denied}
    added = [network for network in added if network not in taken][:changes]
    for kind in range(changes):
        entries = trusted if kind % 4 else denied
        if kind % 3 == 0:
            entries[rng.randrange(len(entries))]["description"] += " (edited)"
        elif kind % 3 == 1:
            del entries[rng.randrange(len(entries))]
        else:
            entries.append(dict(entries[0], id=next_id + kind, network=added[kind]))
    trusted.sort(key=exporter_order)
    denied.sort(key=exporter_order)
    return changed


def random_addresses(listed: list[str], count: int, rng: random.Random) -> list[str]:
    """Return count addresses, half inside a random listed network and half anywhere (mostly unlisted)."""
    networks = [ipaddress.ip_network(text) for text in listed]
    addresses = []
    for index in range(count):
        if index % 2:
            network = rng.choice(networks)
            value = int(network.network_address) + rng.randrange(network.num_addresses)
            addresses.append(str(ipaddress.ip_address(value) if network.version == 4 else ipaddress.IPv6Address(value)))
        elif index % 6:
            addresses.append(str(ipaddress.IPv4Address(rng.getrandbits(32))))
        else:
            addresses.append(str(ipaddress.IPv6Address((0x2001 << 112) | rng.getrandbits(112))))
    return addresses


class Stopwatch:
    """Measure the wall-clock and CPU seconds of a with-block."""

    def __enter__(self) -> Stopwatch:
        self.wall, self.cpu = -time.perf_counter(), -time.process_time()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.wall += time.perf_counter()
        self.cpu += time.process_time()


def median_ms(watches: list[Stopwatch]) -> tuple[float, float]:
    """Return the median wall-clock and CPU milliseconds."""
    return statistics.median(w.wall for w in watches) * 1000, statistics.median(w.cpu for w in watches) * 1000


def time_json_decode(path: Path, runs: int) -> tuple[float, float]:
    """Return the median milliseconds of decoding the JSON alone (orjson, as relayd does): the floor under a reload.

    The JSON texts of a compact list's blocks are decoded too.
    """
    data = path.read_bytes()
    watches = []
    for _ in range(runs):
        with Stopwatch() as watch:
            document = orjson.loads(data)
            for key in NETWORK_LISTS:
                if isinstance(document[key], dict):
                    list(map(orjson.loads, document[key]["blocks"]))
        watches.append(watch)
    return median_ms(watches)


def time_reload(path: Path, runs: int) -> tuple[tuple[float, float], CompiledPolicy]:
    """Return the median milliseconds of a cold load + validate + compile, and the last compiled policy.

    The previous policy stays alive while the next is built, as in the daemon, but is not used.
    """
    watches, policy = [], None
    for _ in range(runs):
        with Stopwatch() as watch:
            policy = compile_policy(load_snapshot(path))
        watches.append(watch)
    return median_ms(watches), policy


def time_warm_reload(path: Path, previous: CompiledPolicy, runs: int) -> tuple[tuple[float, float], CompiledPolicy]:
    """Return the median milliseconds of a reload given the policy in force, and the last compiled policy."""
    watches, policy = [], None
    for _ in range(runs):
        with Stopwatch() as watch:
            policy = compile_policy(load_snapshot(path, previous=previous.snapshot), previous=previous)
        watches.append(watch)
    return median_ms(watches), policy


def same_answers(warm: CompiledPolicy, cold: CompiledPolicy, addresses: list[Address]) -> bool:
    """Return whether both policies hold equal snapshots and answer alike for addresses, trusted and denied."""
    return warm.snapshot == cold.snapshot and all(
        warm.trusted.lookup(address, NOW) == cold.trusted.lookup(address, NOW)
        and warm.denied.lookup(address, NOW) == cold.denied.lookup(address, NOW)
        for address in addresses
    )


def time_lookups(policy: CompiledPolicy, addresses: list[Address]) -> tuple[float, float]:
    """Return trusted-network lookups per second over pre-parsed addresses, by wall clock and by CPU time."""
    lookup = policy.trusted.lookup
    with Stopwatch() as watch:
        for address in addresses:
            lookup(address, NOW)
    return len(addresses) / watch.wall, len(addresses) / watch.cpu


def time_parse_and_lookups(policy: CompiledPolicy, addresses: list[str]) -> tuple[float, float]:
    """Return lookups per second including parsing each address from text."""
    lookup = policy.trusted.lookup
    with Stopwatch() as watch:
        for address in addresses:
            lookup(parse_address(address), NOW)
    return len(addresses) / watch.wall, len(addresses) / watch.cpu


def verdict(ok: bool) -> str:
    return "meets target" if ok else "MISSES target"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--networks", type=int, default=100_000)
    parser.add_argument("--lookups", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--changes", type=int, default=10, help="entries changed for the warm reload")
    parser.add_argument("--rows", action="store_true", help="network lists of objects (schema 1), not compact")
    parser.add_argument("--unordered", action="store_true", help="with --rows: shuffle the lists the exporter sorts")
    args = parser.parse_args()
    if args.unordered and not args.rows:
        parser.error("--unordered needs --rows: compact lists are always in network order")

    load = os.getloadavg()[0]
    rng = random.Random(2026)
    snapshot = synthetic_snapshot(args.networks, rng)
    next_snapshot = changed_snapshot(snapshot, args.changes, rng)
    if args.unordered:
        # In an order of their own that each entry keeps from one revision to the next.
        for document in (snapshot, next_snapshot):
            for key in ("trusted_networks", "denied_networks"):
                document[key].sort(key=lambda entry: random.Random(entry["id"]).random())
    trusted, denied = len(snapshot["trusted_networks"]), len(snapshot["denied_networks"])
    listed = [entry["network"] for entry in rng.sample(snapshot["trusted_networks"], min(trusted, 5000))]
    if not args.rows:
        snapshot, next_snapshot = (
            {**compact_snapshot(document), "schema": COMPACT_SCHEMA} for document in (snapshot, next_snapshot)
        )
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "policy.json"
        path.write_text(json.dumps(snapshot))
        next_path = Path(directory) / "next.json"
        next_path.write_text(json.dumps(next_snapshot))
        size_mb = path.stat().st_size / 1e6
        # Only the policy in force should share the heap with a reload, as in the daemon.
        del snapshot, next_snapshot
        gc.collect()
        # As the daemon goes: one cold load when it starts, then warm reloads of each new revision.
        started = compile_policy(load_snapshot(path))
        (warm_wall, warm_cpu), warm = time_warm_reload(next_path, started, args.runs)
        del started
        (reload_wall, reload_cpu), policy = time_reload(path, args.runs)
        cold_next = compile_policy(load_snapshot(next_path))
        json_wall, json_cpu = time_json_decode(path, args.runs)

    texts = random_addresses(listed, args.lookups, rng)
    addresses = [parse_address(text) for text in texts]
    checked = same_answers(warm, cold_next, addresses[:100_000])
    del warm, cold_next
    lookups_wall, lookups_cpu = time_lookups(policy, addresses)
    parsed_wall, parsed_cpu = time_parse_and_lookups(policy, texts)

    print(f"load average before the run: {load:.2f} on {os.cpu_count()} CPUs (other work slows every figure)")
    if not args.rows:
        order = "compact lists, schema 3"
    else:
        order = "lists of objects, schema 1, " + (
            "shuffled" if args.unordered else "sorted as the exporter writes them"
        )
    print(f"networks: {args.networks:,} ({trusted:,} trusted, {denied:,} denied, {order}), snapshot {size_mb:.1f} MB")
    print("targets are judged on CPU time, which other work on the host inflates least")
    print(
        f"cold reload (load + validate + compile), median of {args.runs}: "
        f"{reload_wall:,.0f} ms wall, {reload_cpu:,.0f} ms CPU"
        f"   target <= {RELOAD_TARGET_MS} ms: {verdict(reload_cpu <= RELOAD_TARGET_MS)}"
    )
    print(f"  of which decoding the JSON alone: {json_wall:,.0f} ms wall, {json_cpu:,.0f} ms CPU")
    print(
        f"warm reload ({args.changes} entries changed, policy in force given), median of {args.runs}: "
        f"{warm_wall:,.0f} ms wall, {warm_cpu:,.0f} ms CPU"
        f"   target <= {WARM_RELOAD_TARGET_MS} ms: {verdict(warm_cpu <= WARM_RELOAD_TARGET_MS)}"
    )
    print(f"  same snapshot and answers (100,000 addresses) as a cold reload of it: {'yes' if checked else 'NO'}")
    print(
        f"lookups over {len(addresses):,} random addresses: {lookups_wall:,.0f}/s wall, {lookups_cpu:,.0f}/s CPU"
        f"   target >= {LOOKUP_TARGET_PER_SECOND:,}/s: {verdict(lookups_cpu >= LOOKUP_TARGET_PER_SECOND)}"
    )
    print(f"  including parsing the address text: {parsed_wall:,.0f}/s wall, {parsed_cpu:,.0f}/s CPU")


if __name__ == "__main__":
    main()
