"""Pending changes of the Routing Restrictions dialog, kept in the session until OK or Cancel.

Exchange's dialog applied nothing until OK. The page does the same without JavaScript:
every Add, Edit, Remove and checkbox change lands in this draft, and OK hands the whole
draft to `services.apply_routing_draft`, which saves it in one transaction or not at all.
"""

from dataclasses import dataclass, field
from datetime import datetime

from django.utils import timezone

from policy import addresses
from policy.forms import DeniedNetworkForm, InternalAddressForm, TrustedNetworkForm
from policy.models import (
    PROFILE_FIELDS,
    DeniedNetwork,
    InternalAddress,
    RoutingRestrictions,
    TrustedNetwork,
)

SESSION_KEY = "routing_restrictions_draft"
FLAGS = ("allow_authenticated", "allow_listed_ips", "allow_internal_addresses")


@dataclass(frozen=True)
class ListKind:
    """One of the dialog's address lists."""

    name: str
    model: type
    form: type
    title: str
    fields: tuple[str, ...]

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
        ),
        ListKind(
            "internal",
            InternalAddress,
            InternalAddressForm,
            "Hosts and clients connecting to these internal addresses",
            ("address", "description"),
        ),
        ListKind(
            "denied",
            DeniedNetwork,
            DeniedNetworkForm,
            "Hosts and clients that can NEVER route mail",
            ("network", "description"),
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
        saved = RoutingRestrictions.load()
        return {name: getattr(saved, name) for name in FLAGS}

    def set_flags(self, flags: dict) -> None:
        saved = RoutingRestrictions.load()
        changed = any(flags[name] != getattr(saved, name) for name in FLAGS)
        self.flags = dict(flags) if changed else None

    def rows(self, kind: str, include_removed: bool = True) -> list[DraftRow]:
        """Return the list as it would be after OK: saved rows with pending edits, then new rows."""
        list_kind = LIST_KINDS[kind]
        changes = self.lists.get(kind, {"added": {}, "changed": {}, "removed": []})
        rows = []
        for obj in list_kind.model.objects.select_related("created_by"):
            key = str(obj.pk)
            if key in changes["removed"]:
                if include_removed:
                    rows.append(DraftRow(key, list_kind.row_data(obj), "removed", obj))
            elif key in changes["changed"]:
                rows.append(DraftRow(key, changes["changed"][key], "changed", obj))
            else:
                rows.append(DraftRow(key, list_kind.row_data(obj), "", obj))
        rows.extend(DraftRow(key, data, "added") for key, data in changes["added"].items())
        return rows

    def listed(self, kind: str, excluding: str | None = None) -> list[addresses.ListedNetwork]:
        """Return the pending list as the overlap checks see it."""
        return [
            addresses.ListedNetwork(
                row.key,
                addresses.parse_network(row.value),
                row.data.get("description", ""),
                active=_takes_effect(row.data),
            )
            for row in self.rows(kind, include_removed=False)
            if row.key != excluding
        ]

    def row(self, kind: str, key: str) -> DraftRow | None:
        return next(
            (row for row in self.rows(kind) if row.key == key and row.state != "removed"),
            None,
        )

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


def _takes_effect(data: dict) -> bool:
    """Tell whether a pending row would take effect: not disabled, not expired."""
    expires_at = data.get("expires_at")
    return data.get("enabled", True) is not False and (
        not expires_at or datetime.fromisoformat(expires_at) > timezone.now()
    )
