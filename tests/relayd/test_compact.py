"""Compact network lists (schema 3, relayd/compact.py): written, read back, validated as lists of objects are."""

import gc
import json
import weakref

import orjson
import pytest

from relayd import compact, config
from relayd.compact import compact_snapshot, expand_snapshot
from relayd.config import COMPACT_SCHEMA, NETWORK_LISTS, SnapshotError, compile_policy, parse_snapshot
from relayd.matcher import parse_address
from tests.relayd.conftest import policy
from tests.snapshots import network
from tests.strategies import NOW

TRUSTED = [
    {**network(1, "10.0.0.0/8"), "description": "LAN"},
    {**network(2, "2001:db8::/32"), "expires_at": "2030-01-01T00:00:00+00:00"},
    network(3, "10.1.0.0/16"),
    network(4, "192.0.2.0/24"),
    network(5, "::a00:0/104"),  # IPv4-compatible: inet_ntop writes it dotted, so the slow path reads it
    network(6, "10.0.0.0/24"),
]
DENIED = [network(1, "10.66.0.0/16", denied=True), network(2, "2001:db8:bad::/48", denied=True)]


def document(**changes):
    return policy(**{"trusted_networks": TRUSTED, "denied_networks": DENIED, **changes})


def compact_document(**changes):
    return {**compact_snapshot(document(**changes)), "schema": COMPACT_SCHEMA}


def in_network_order(entries):
    return sorted(entries, key=lambda entry: compact._order_of_text(entry))


def test_a_compact_snapshot_holds_the_same_entries_in_network_order():
    rows = parse_snapshot(json.dumps(document()))
    packed = parse_snapshot(json.dumps(compact_document()))
    assert packed.schema == COMPACT_SCHEMA
    for key in NETWORK_LISTS:
        assert set(getattr(packed, key)) == set(getattr(rows, key))
    assert [str(entry.network) for entry in packed.trusted_networks] == [
        "10.0.0.0/8",
        "10.0.0.0/24",
        "10.1.0.0/16",
        "192.0.2.0/24",
        "::a00:0/104",
        "2001:db8::/32",
    ]


def test_expanding_gives_back_the_objects_in_network_order():
    expanded = expand_snapshot(compact_document())
    assert expanded["trusted_networks"] == in_network_order(TRUSTED)
    assert expanded["denied_networks"] == DENIED
    # As relayd reads it: a schema-3 document may have its lists as objects.
    assert set(parse_snapshot(json.dumps(expanded)).trusted_networks) == set(
        parse_snapshot(json.dumps(document())).trusted_networks
    )
    assert expand_snapshot(document()) == document()


def test_both_forms_answer_alike():
    rows = compile_policy(parse_snapshot(json.dumps(document())))
    packed = compile_policy(parse_snapshot(json.dumps(compact_document())))
    for address in [
        "10.0.0.1",
        "10.1.2.3",
        "10.66.0.1",
        "192.0.2.9",
        "::a00:1",
        "2001:db8::1",
        "2001:db8:bad::1",
        "8.8.8.8",
    ]:
        parsed = parse_address(address)
        assert rows.trusted.lookup(parsed, NOW) == packed.trusted.lookup(parsed, NOW), address
        assert rows.denied.lookup(parsed, NOW) == packed.denied.lookup(parsed, NOW), address


def test_an_empty_list_has_no_blocks():
    empty = {**compact_snapshot(policy(trusted_networks=[], denied_networks=[])), "schema": COMPACT_SCHEMA}
    assert empty["trusted_networks"] == {"columns": list(NETWORK_LISTS["trusted_networks"]), "blocks": []}
    assert parse_snapshot(json.dumps(empty)).trusted_networks == ()


def test_blocks_end_where_the_networks_say_so_an_edit_rewrites_one_block(monkeypatch):
    monkeypatch.setattr(compact, "BLOCK_SPACING", 4)
    trusted = [network(index, f"10.{index >> 8}.{index & 255}.0/24") for index in range(1, 400)]
    before = compact.encode(trusted, NETWORK_LISTS["trusted_networks"])["blocks"]
    trusted[200] = {**trusted[200], "description": "edited"}
    after = compact.encode(trusted, NETWORK_LISTS["trusted_networks"])["blocks"]
    assert len(before) == len(after) > 50
    assert sum(old != new for old, new in zip(before, after, strict=True)) == 1


def test_a_block_holds_at_most_max_block_entries(monkeypatch):
    monkeypatch.setattr(compact, "BLOCK_SPACING", 1 << 40)  # no natural boundary
    monkeypatch.setattr(compact, "MAX_BLOCK", 3)
    blocks = compact.encode(TRUSTED, NETWORK_LISTS["trusted_networks"])["blocks"]
    assert [len(orjson.loads(block)[0]) for block in blocks] == [3, 3]


def blocks_of(*rows_per_block):
    """Return a compact trusted list of hand-made blocks, each a list of entries."""
    fields = NETWORK_LISTS["trusted_networks"]
    return {"columns": list(fields), "blocks": [compact._block(rows, fields) for rows in rows_per_block]}


def refusal(trusted) -> SnapshotError:
    document = {**compact_document(), "trusted_networks": trusted}
    with pytest.raises(SnapshotError) as caught:
        parse_snapshot(json.dumps(document))
    return caught.value


FIELDS = list(NETWORK_LISTS["trusted_networks"])
A, B, C = network(1, "10.0.0.0/8"), network(2, "10.0.0.0/16"), network(3, "10.2.0.0/16")


@pytest.mark.parametrize(
    ("trusted", "path", "problem"),
    [
        ("blocks", "trusted_networks", "must be a list"),
        ({"columns": FIELDS}, "trusted_networks.blocks", "missing"),
        ({"columns": FIELDS, "blocks": [], "extra": 1}, "trusted_networks.extra", "unknown key"),
        ({"columns": FIELDS[::-1], "blocks": []}, "trusted_networks.columns", "must be "),
        ({"columns": FIELDS[:-1], "blocks": []}, "trusted_networks.columns", "must be "),
        ({"columns": FIELDS, "blocks": "[]"}, "trusted_networks.blocks", "must be a list of strings"),
        ({"columns": FIELDS, "blocks": [[[1]]]}, "trusted_networks.blocks[0]", "must be a string"),
        ({"columns": FIELDS, "blocks": ["[[1],"]}, "trusted_networks.blocks[0]", "not valid JSON"),
        ({"columns": FIELDS, "blocks": ["{}"]}, "trusted_networks.blocks[0]", "must be 6 lists"),
        ({"columns": FIELDS, "blocks": ["[[],[],[],[],[],[]]"]}, "trusted_networks.blocks[0]", "not empty"),
        ({"columns": FIELDS, "blocks": ["[[1],[],[],[],[],[]]"]}, "trusted_networks.blocks[0]", "of one length"),
        (blocks_of([A], [{**B, "network": "10.0.0.1/16"}]), "trusted_networks[1].network", "host bits set"),
        (blocks_of([A, {**B, "id": 0}]), "trusted_networks[1].id", "must be a positive integer"),
        (blocks_of([A, {**B, "added_at": "2026-11-28"}]), "trusted_networks[1].added_at", "no UTC offset"),
        (blocks_of([A, {**B, "expires_at": 5}]), "trusted_networks[1].expires_at", "timestamp string"),
        # Unsorted, within a block and across blocks.
        (blocks_of([B, A]), "trusted_networks[1].network", "10.0.0.0/8 comes after 10.0.0.0/16"),
        (blocks_of([A, C], [B]), "trusted_networks[2].network", "10.0.0.0/16 comes after 10.2.0.0/16"),
        (blocks_of([network(1, "2001:db8::/32")], [A]), "trusted_networks[1].network", "IPv4 first"),
        # The same network twice (an overlap the matcher could only settle by list order).
        (blocks_of([A, {**A, "id": 9}]), "trusted_networks[1].network", "holds each network once"),
        (blocks_of([A], [{**A, "id": 9}]), "trusted_networks[1].network", "holds each network once"),
    ],
)
def test_malformed_compact_lists_are_refused_naming_the_problem(trusted, path, problem):
    error = refusal(trusted)
    assert error.path == path
    assert problem in error.problem


def test_an_entry_is_refused_with_the_same_words_as_in_a_list_of_objects():
    bad = {**B, "network": "10.0.0.01/16"}
    with pytest.raises(SnapshotError) as row_error:
        parse_snapshot(json.dumps(policy(trusted_networks=[A, bad])))
    assert refusal(blocks_of([A, bad])).args == row_error.value.args


@pytest.mark.parametrize("schema", [1, 2])
def test_compact_lists_need_schema_3(schema):
    with pytest.raises(SnapshotError, match=r"^trusted_networks: must be a list"):
        parse_snapshot(json.dumps({**compact_document(), "schema": schema}))


def test_schema_3_still_takes_lists_of_objects():
    assert parse_snapshot(json.dumps({**document(), "schema": COMPACT_SCHEMA})).schema == COMPACT_SCHEMA


def test_a_reload_reuses_unchanged_blocks_and_the_entries_of_changed_ones():
    first = parse_snapshot(json.dumps(compact_document()))
    edited = [{**entry, "description": "edited"} if entry["id"] == 4 else entry for entry in TRUSTED]
    second = parse_snapshot(json.dumps(compact_document(trusted_networks=edited)), first)
    assert second == parse_snapshot(json.dumps(compact_document(trusted_networks=edited)))
    kept = {entry.id: entry for entry in first.trusted_networks}
    for entry in second.trusted_networks:
        assert (entry is kept[entry.id]) == (entry.id != 4)
    assert second.denied_networks[0] is first.denied_networks[0]


def test_a_reload_does_not_reuse_an_entry_whose_times_are_equal_but_written_in_another_zone():
    first = parse_snapshot(json.dumps(compact_document()))
    moved = [{**entry, "added_at": "2026-11-28T01:00:00+01:00"} if entry["id"] == 1 else entry for entry in TRUSTED]
    second = parse_snapshot(json.dumps(compact_document(trusted_networks=moved)), first)
    (entry,) = [entry for entry in second.trusted_networks if entry.id == 1]
    assert entry.added_at.utcoffset().total_seconds() == 3600


def test_a_reload_refuses_known_blocks_out_of_order(monkeypatch):
    monkeypatch.setattr(compact, "BLOCK_SPACING", 1)  # a block for each entry
    first = parse_snapshot(json.dumps(compact_document()))
    known = compact_document()["trusted_networks"]["blocks"]
    assert len(known) == len(TRUSTED)
    swapped = {"columns": FIELDS, "blocks": known[::-1]}
    with pytest.raises(SnapshotError, match="comes after"):
        parse_snapshot(json.dumps({**compact_document(), "trusted_networks": swapped}), first)


def test_a_relayd_before_schema_3_refuses_a_compact_snapshot_rather_than_misread_it(monkeypatch):
    monkeypatch.setattr("relayd.config.SUPPORTED_SCHEMAS", (1, 2))
    with pytest.raises(SnapshotError, match=r"^schema: unsupported schema 3: this relayd understands schemas 1 and 2$"):
        parse_snapshot(json.dumps(compact_document()))


def test_a_schema_newer_than_3_is_refused():
    with pytest.raises(
        SnapshotError, match=r"^schema: unsupported schema 4: this relayd understands schemas 1, 2 and 3$"
    ):
        parse_snapshot(json.dumps({**compact_document(), "schema": 4}))


def test_a_reload_leaves_the_collector_on_and_garbage_cycles_made_meanwhile_collectable(monkeypatch):
    """The collector pauses during a reload and then moves what survived to its oldest generation."""

    class Node:
        pass

    made = []
    real = orjson.loads

    def loads_making_a_cycle(text):
        cycle = Node()
        cycle.self = cycle
        made.append(weakref.ref(cycle))
        return real(text)

    monkeypatch.setattr("relayd.config.orjson.loads", loads_making_a_cycle)
    assert gc.isenabled()
    compile_policy(parse_snapshot(json.dumps(compact_document())))
    assert gc.isenabled()
    gc.collect()
    assert made and all(ref() is None for ref in made)


def test_a_long_list_of_objects_is_read_a_column_at_a_time_alike():
    fields = NETWORK_LISTS["trusted_networks"]
    trusted = [network(index, f"10.{index >> 8}.{index & 255}.0/24") for index in range(1, 300)]
    trusted += [{**network(300, "2001:db8::/32"), "expires_at": "2030-01-01T00:00:00Z"}]
    one_by_one = tuple(config._trusted_network(tuple(entry[name] for name in fields)) for entry in trusted)
    assert parse_snapshot(json.dumps(policy(trusted_networks=trusted))).trusted_networks == one_by_one
    # IPv6 first, which the columns do not read: one by one, with the same result.
    assert parse_snapshot(json.dumps(policy(trusted_networks=trusted[::-1]))).trusted_networks == one_by_one[::-1]
    trusted[150] = {**trusted[150], "network": "10.0.150.1/24"}
    with pytest.raises(SnapshotError, match=r"^trusted_networks\[150\]\.network: host bits set"):
        parse_snapshot(json.dumps(policy(trusted_networks=trusted)))
