"""Write and read the compact network lists of snapshot schema 3 (docs/snapshot.md, "Compact network lists").

A compact list is {"columns": [field names], "blocks": [text, ...]}: its entries in network order
(relayd.matcher.network_order), cut into blocks, each block the JSON text of one array per
column. JSON decodes a block of columns at a fraction of the cost of as many objects, and a
reload skips every block whose text it validated before. relayd/config.py validates the lists;
this module writes them, and reads them back as objects for the dashboard, which shows, compares
and restores entries that way.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Mapping, Sequence
from itertools import chain
from typing import Any

import orjson

from relayd.config import NETWORK_LISTS
from relayd.matcher import network_order, parse_network

# A block ends after each entry whose network text hashes to 0 modulo BLOCK_SPACING, so a block
# holds that many entries on average, and where blocks end depends only on the networks next
# to the boundary: a change to one entry changes one block's text (two if it was at a boundary),
# and a reload validates those alone. MAX_BLOCK bounds a block where no boundary comes.
BLOCK_SPACING = 64
MAX_BLOCK = 1024


def compact_snapshot(document: dict[str, Any]) -> dict[str, Any]:
    """Return the snapshot document with its network lists compact; the caller sets the schema they need."""
    return {**document, **{key: encode(document[key], fields) for key, fields in NETWORK_LISTS.items()}}


def expand_snapshot(document: dict[str, Any]) -> dict[str, Any]:
    """Return the snapshot document with its network lists as lists of objects, whichever way it has them.

    This is how the dashboard reads a snapshot: the entries are the same, and relayd reads the
    result as it reads the document.
    """
    if not any(isinstance(document.get(key), dict) for key in NETWORK_LISTS):
        return document
    return {**document, **{key: expand(document[key]) for key in NETWORK_LISTS}}


def encode(entries: Sequence[Mapping[str, Any]], fields: Sequence[str]) -> dict[str, Any]:
    """Return the compact list of entries (objects with exactly fields, one of them "network")."""
    ordered = sorted(entries, key=_order_of_text)
    blocks: list[str] = []
    start = 0
    for index, entry in enumerate(ordered, start=1):
        if index - start == MAX_BLOCK or zlib.crc32(str(entry["network"]).encode()) % BLOCK_SPACING == 0:
            blocks.append(_block(ordered[start:index], fields))
            start = index
    if start < len(ordered):
        blocks.append(_block(ordered[start:], fields))
    return {"columns": list(fields), "blocks": blocks}


def _order_of_text(entry: Mapping[str, Any]) -> tuple[int, int]:
    # An invalid network sorts last rather than failing here: relayd's loader then refuses it by name.
    try:
        return 0, network_order(parse_network(entry["network"]))
    except (TypeError, ValueError):
        return 1, 0


def _block(entries: Sequence[Mapping[str, Any]], fields: Sequence[str]) -> str:
    return json.dumps(
        [[entry[name] for entry in entries] for name in fields], ensure_ascii=False, separators=(",", ":")
    )


def read_snapshot(text: str | bytes) -> dict[str, Any]:
    """Return a snapshot's JSON text as the dashboard reads it: decoded, its network lists as objects."""
    return expand_snapshot(orjson.loads(text))


def expand(section: list[Any] | dict[str, Any]) -> list[dict[str, Any]]:
    """Return a network list as objects, from the compact form or the list of objects that earlier schemas have."""
    if isinstance(section, list):
        return section
    fields = section["columns"]
    columns = map(orjson.loads, section["blocks"])
    return [
        dict(zip(fields, row, strict=True))
        for row in chain.from_iterable(zip(*block, strict=True) for block in columns)
    ]
