"""Readable differences: between two audit states, and between two policy snapshots."""

from dataclasses import dataclass, field

from policy.audit import fingerprint

# How entries of each snapshot list are told apart, and how the list is called on screen.
SNAPSHOT_SECTIONS = {
    "trusted_networks": ("network", "Trusted networks"),
    "denied_networks": ("network", "NEVER list"),
    "internal_addresses": ("address", "Internal addresses"),
    "local_domains": ("domain", "Local domains"),
    "smtp_users": ("username", "SMTP users"),
}
# Bookkeeping that differs between any two snapshots and says nothing about the policy.
IGNORED_FIELDS = {"id", "added_at", "added_by"}
SECRET_FIELDS = {"password_hash"}
HIDDEN_SECRET = "••••••"  # noqa: S105 (a mask shown instead of a secret)


@dataclass(frozen=True)
class FieldChange:
    name: str
    before: object
    after: object


@dataclass
class SectionDiff:
    title: str
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    changed: list[tuple[str, list[FieldChange]]] = field(default_factory=list)
    hidden: int = 0  # changes left out by shortened()

    def __bool__(self):
        return bool(self.added or self.removed or self.changed)


def shortened(sections: list[SectionDiff], limit: int) -> list[SectionDiff]:
    """Keep at most `limit` added, removed and changed entries per section, counting the rest in `hidden`."""
    return [
        SectionDiff(
            section.title,
            section.added[:limit],
            section.removed[:limit],
            section.changed[:limit],
            hidden=sum(max(len(part) - limit, 0) for part in (section.added, section.removed, section.changed)),
        )
        for section in sections
    ]


def field_changes(before: dict | None, after: dict | None) -> list[FieldChange]:
    """Return the fields whose value differs, in a stable order."""
    before, after = before or {}, after or {}
    return [
        FieldChange(name, before.get(name), after.get(name))
        for name in sorted(before.keys() | after.keys())
        if before.get(name) != after.get(name)
    ]


def snapshot_diff(old: dict, new: dict) -> list[SectionDiff]:
    """Return what changed from one snapshot to another, section by section; empty sections left out."""
    flags = SectionDiff("Routing restrictions")
    flags.changed = [
        (change.name.replace("_", " "), [change]) for change in field_changes(old["restrictions"], new["restrictions"])
    ]
    sections = [flags]
    for name, (key, title) in SNAPSHOT_SECTIONS.items():
        section = SectionDiff(title)
        sections.append(section)
        if old[name] == new[name]:
            continue  # one comparison in C for an unchanged list of 10,000 entries
        before = {entry[key]: entry for entry in old[name]}
        after = {entry[key]: entry for entry in new[name]}
        section.added = sorted(after.keys() - before.keys())
        section.removed = sorted(before.keys() - after.keys())
        # Equal entries (nearly all of them) are skipped by one dict comparison each.
        for entry_key in sorted(k for k, entry in after.items() if k in before and before[k] != entry):
            changes = field_changes(_visible(before[entry_key]), _visible(after[entry_key]))
            if changes:
                section.changed.append((entry_key, changes))
    return [section for section in sections if section]


def without_secrets(snapshot: dict) -> dict:
    """Return the snapshot with password hashes masked, for showing it on a page."""
    return {
        name: [_masked(entry) for entry in value] if name == "smtp_users" else value for name, value in snapshot.items()
    }


def _masked(entry: dict) -> dict:
    return {name: HIDDEN_SECRET if name in SECRET_FIELDS else value for name, value in entry.items()}


def _visible(entry: dict) -> dict:
    """Drop bookkeeping; a changed password shows as changed, never as the hash."""
    visible = {name: value for name, value in entry.items() if name not in IGNORED_FIELDS}
    for name in SECRET_FIELDS & visible.keys():
        visible[name] = fingerprint(visible[name])
    return visible
