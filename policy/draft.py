"""Pending changes of the Routing Restrictions dialog, kept in the session until OK or Cancel.

Exchange's dialog applied nothing until OK. The page does the same without JavaScript:
every Add, Edit, Remove and checkbox change lands in this draft, and OK hands the whole
draft to `services.apply_routing_draft`, which saves it in one transaction or not at all.
"""

import contextlib
from dataclasses import dataclass, field
from datetime import datetime

from django.db.models import Q

from policy import addresses
from policy.filtersets import DeniedNetworkFilterSet, InternalAddressFilterSet, TrustedNetworkFilterSet
from policy.forms import DeniedNetworkForm, InternalAddressForm, TrustedNetworkForm
from policy.models import (
    PROFILE_FIELDS,
    DeniedNetwork,
    InternalAddress,
    RoutingRestrictions,
    TrustedNetwork,
)

SESSION_KEY = "routing_restrictions_draft"


@dataclass(frozen=True)
class ListKind:
    """One of the dialog's address lists."""

    name: str
    model: type[TrustedNetwork] | type[InternalAddress] | type[DeniedNetwork]
    form: type
    title: str
    fields: tuple[str, ...]
    filterset: type

    def row_data(self, obj) -> dict:
        data = {name: getattr(obj, name) for name in self.fields}
        if "expires_at" in data and data["expires_at"] is not None:
            data["expires_at"] = data["expires_at"].isoformat()
        return data


LIST_KINDS = {
    kind.name: kind
    for kind in (
        ListKind(
            "trusted",
            TrustedNetwork,
            TrustedNetworkForm,
            "Hosts and clients with these IP addresses",
            ("network", "description", "enabled", "expires_at", "open_relay_override", *PROFILE_FIELDS),
            TrustedNetworkFilterSet,
        ),
        ListKind(
            "internal",
            InternalAddress,
            InternalAddressForm,
            "Hosts and clients connecting to these internal addresses",
            ("address", "description"),
            InternalAddressFilterSet,
        ),
        ListKind(
            "denied",
            DeniedNetwork,
            DeniedNetworkForm,
            "Hosts and clients that can NEVER route mail",
            ("network", "description"),
            DeniedNetworkFilterSet,
        ),
    )
}


@dataclass
class DraftRow:
    key: str
    data: dict
    state: str = ""  # "", "added", "changed" or "removed"
    obj: object = None

    @property
    def value(self) -> str:
        return self.data.get("network") or self.data["address"]


@dataclass
class Draft:
    """The pending state of the dialog. Keys of saved rows are their ids; new rows get "n1", "n2", …"""

    flags: dict | None = None
    lists: dict = field(default_factory=dict)
    next_new: int = 1

    @classmethod
    def load(cls, session) -> "Draft":
        return cls(**session.get(SESSION_KEY, {}))

    def store(self, session) -> None:
        session[SESSION_KEY] = {
            "flags": self.flags,
            "lists": self.lists,
            "next_new": self.next_new,
        }

    @staticmethod
    def discard(session) -> None:
        session.pop(SESSION_KEY, None)

    @property
    def is_dirty(self) -> bool:
        return self.flags is not None or any(
            changes["added"] or changes["changed"] or changes["removed"] for changes in self.lists.values()
        )

    def change_count(self) -> int:
        """Return how many entries the draft adds, changes or removes, counting the checkboxes as one."""
        states = ("added", "changed", "removed")
        entries = sum(len(changes[state]) for changes in self.lists.values() for state in states)
        return entries + (self.flags is not None)

    def _changes(self, kind: str) -> dict:
        return self.lists.setdefault(kind, {"added": {}, "changed": {}, "removed": []})

    def effective_flags(self) -> dict:
        if self.flags is not None:
            return dict(self.flags)
        return RoutingRestrictions.load().flag_values()

    def set_flags(self, flags: dict) -> None:
        saved = RoutingRestrictions.load().flag_values()
        changed = any(flags[name] != saved[name] for name in RoutingRestrictions.FLAG_NAMES)
        self.flags = dict(flags) if changed else None

    def _row(self, kind: ListKind, obj) -> DraftRow:
        """Return a saved row as the draft shows it: with its pending edit, or marked removed."""
        changes = self.lists.get(kind.name, {"added": {}, "changed": {}, "removed": []})
        key = str(obj.pk)
        if key in changes["removed"]:
            return DraftRow(key, kind.row_data(obj), "removed", obj)
        if key in changes["changed"]:
            return DraftRow(key, changes["changed"][key], "changed", obj)
        return DraftRow(key, kind.row_data(obj), "", obj)

    def rows(self, kind: str, search: str = "") -> "DraftRows":
        """Return the list as it would be after OK, matching a search: saved rows with pending edits, then new rows.

        The result is read a page at a time (Paginator slices it): the database pages the saved
        rows, so a page of a 10,000-entry list reads 100 of them.
        """
        return DraftRows(self, LIST_KINDS[kind], search.strip())

    def listing(self, kind: str, excluding: str | None = None) -> "DraftListing":
        """Return the pending list as the duplicate and overlap checks see it, without loading it."""
        return DraftListing(self, LIST_KINDS[kind], excluding)

    def row(self, kind: str, key: str) -> DraftRow | None:
        """Return one row that OK would keep, by key, or None."""
        list_kind = LIST_KINDS[kind]
        changes = self.lists.get(kind, {"added": {}, "changed": {}, "removed": []})
        if key in changes["added"]:
            return DraftRow(key, changes["added"][key], "added")
        obj = list_kind.model.objects.filter(pk=int(key)).first() if key.isdigit() else None
        if obj is None or key in changes["removed"]:
            return None
        return self._row(list_kind, obj)

    def pending(self, kind: str) -> list[DraftRow]:
        """Return the rows the draft adds or edits: few, and held in the session."""
        changes = self.lists.get(kind, {"added": {}, "changed": {}, "removed": []})
        return [DraftRow(key, data, "changed") for key, data in changes["changed"].items()] + [
            DraftRow(key, data, "added") for key, data in changes["added"].items()
        ]

    def hidden_keys(self, kind: str) -> set[int]:
        """Return the ids of saved rows whose saved state OK replaces: removed or changed."""
        changes = self.lists.get(kind, {"added": {}, "changed": {}, "removed": []})
        return {int(key) for key in (*changes["removed"], *changes["changed"]) if key.isdigit()}

    def add(self, kind: str, data: dict) -> str:
        key = f"n{self.next_new}"
        self.next_new += 1
        self._changes(kind)["added"][key] = data
        return key

    def change(self, kind: str, key: str, data: dict) -> None:
        changes = self._changes(kind)
        if key in changes["added"]:
            changes["added"][key] = data
        else:
            changes["changed"][key] = data

    def remove(self, kind: str, key: str) -> None:
        changes = self._changes(kind)
        if key in changes["added"]:
            del changes["added"][key]
            return
        changes["changed"].pop(key, None)
        if key not in changes["removed"]:
            changes["removed"].append(key)

    def undo_remove(self, kind: str, key: str) -> None:
        changes = self._changes(kind)
        if key in changes["removed"]:
            changes["removed"].remove(key)


class Search:
    """A list's search box: an address or network finds the entries containing it, as the API's
    `?contains=` does; any other text finds entries whose address or description contains it (`?q=`).
    """

    def __init__(self, kind: ListKind, text: str):
        self.kind, self.text = kind, text
        self.network = None
        if text and kind.name != "internal":
            with contextlib.suppress(addresses.AddressError):
                self.network = addresses.parse_network(text)

    def filter(self, queryset):
        if not self.text:
            return queryset
        data = {"contains": self.text} if self.network is not None else {"q": self.text}
        return self.kind.filterset(data, queryset=queryset).qs

    def matches(self, row: DraftRow) -> bool:
        """Judge a pending row as filter() judges a saved one."""
        if not self.text:
            return True
        if self.network is not None:
            try:
                network = addresses.parse_network(row.value)
            except addresses.AddressError:
                return False
            return network.version == self.network.version and self.network in network
        needle = self.text.casefold()
        return needle in row.value.casefold() or needle in row.data.get("description", "").casefold()


class DraftRows:
    """One list of the draft, matching a search, as a sequence that Paginator reads a page at a time."""

    def __init__(self, draft: Draft, kind: ListKind, search: str):
        self.draft, self.kind, self.search = draft, kind, Search(kind, search)
        changes = draft.lists.get(kind.name, {"added": {}, "changed": {}, "removed": []})
        # A changed row is found by what it would become, as well as by what it was.
        changed = [key for key, data in changes["changed"].items() if self.search.matches(DraftRow(key, data))]
        saved = kind.model.objects.select_related("created_by")
        matching = self.search.filter(kind.model.objects.all()).values("pk")
        self.saved = saved.filter(Q(pk__in=matching) | Q(pk__in=[int(key) for key in changed])) if search else saved
        self.added = [
            DraftRow(key, data, "added")
            for key, data in changes["added"].items()
            if self.search.matches(DraftRow(key, data))
        ]
        self._saved_count: int | None = None

    def saved_count(self) -> int:
        if self._saved_count is None:
            self._saved_count = self.saved.count()
        return self._saved_count

    def count(self) -> int:
        return self.saved_count() + len(self.added)

    __len__ = count

    def __getitem__(self, index):
        if not isinstance(index, slice):
            return self[index : index + 1][0]
        start, stop, _ = index.indices(self.count())
        saved = self.saved_count()
        rows = [self.draft._row(self.kind, obj) for obj in self.saved[start:stop]] if start < saved else []
        return rows + self.added[max(start - saved, 0) : max(stop - saved, 0)]


class DraftListing:
    """The pending list as the duplicate and overlap checks ask about it, one network at a time.

    Saved rows are found by indexed queries on their range columns; the draft's own edits, few
    and held in the session, are checked in memory. The entry being edited is left out.
    """

    def __init__(self, draft: Draft, kind: ListKind, excluding: str | None = None):
        self.draft, self.kind, self.excluding = draft, kind, excluding

    def duplicate(self, network) -> addresses.ListedNetwork | None:
        if self.kind.name == "internal":
            saved = Q(address=addresses.address_text(network.ip))
        else:
            saved = Q(family=network.version, range_start=f"{network.first:032x}", range_end=f"{network.last:032x}")
        return addresses.find_duplicate(network, self._entries(saved, network))

    def related(self, network) -> list[addresses.ListedNetwork]:
        """Return the entries that cover this network or that it covers (and itself, if listed)."""
        if self.kind.name == "internal":
            return []
        first, last = f"{network.first:032x}", f"{network.last:032x}"
        saved = Q(family=network.version) & (
            Q(range_start__lte=first, range_end__gte=last) | Q(range_start__gte=first, range_end__lte=last)
        )
        return self._entries(saved, network)

    def _entries(self, saved: Q, network) -> list[addresses.ListedNetwork]:
        hidden = self.draft.hidden_keys(self.kind.name)
        if self.excluding and self.excluding.isdigit():
            hidden.add(int(self.excluding))
        rows = [
            self.draft._row(self.kind, obj)
            for obj in self.kind.model.objects.filter(saved).exclude(pk__in=hidden).order_by("pk")
        ]
        rows += [row for row in self.draft.pending(self.kind.name) if row.key != self.excluding]
        entries = [_listed(row) for row in rows]
        return [
            entry
            for entry in entries
            if entry.network.version == network.version and (entry.network in network or network in entry.network)
        ]


def _listed(row: DraftRow) -> addresses.ListedNetwork:
    return addresses.ListedNetwork(
        row.key, addresses.parse_network(row.value), row.data.get("description", ""), active=_takes_effect(row.data)
    )


def _takes_effect(data: dict) -> bool:
    """Tell whether a pending row would take effect: not disabled, not expired."""
    expires_at = data.get("expires_at")
    return TrustedNetwork.takes_effect(
        data.get("enabled", True) is not False, datetime.fromisoformat(expires_at) if expires_at else None
    )
