"""How audit entries read on screen: usernames for user ids, and one row per bulk change.

The entries themselves stay as recorded (they are hashed); everything here happens when they
are shown, as NetBox computes its diffs at display time.
"""

from collections import Counter
from dataclasses import dataclass, field
from functools import cache

from django.contrib.auth import get_user_model
from django.db.models import CharField, Count, F, Max, Value
from django.db.models.functions import Cast, Coalesce, Concat, NullIf

from policy import audit
from policy.diffs import FieldChange, field_changes

# A bulk change of thousands of rows shows this many in its group; a link filters the log to the rest.
GROUP_PREVIEW = 100


@cache
def _user_fields() -> dict[str, frozenset[str]]:
    """Return, per audited object type, the fields that hold a user's id."""
    user_model = get_user_model()
    fields = {}
    for model in audit._tracked:
        names = frozenset(
            f.name for f in model._meta.concrete_fields if f.is_relation and f.related_model is user_model
        )
        if names:
            fields[str(model._meta.verbose_name)] = names
    return fields


def readable(entries) -> list[tuple[object, list[FieldChange]]]:
    """Return (entry, changes) pairs whose user ids read as usernames."""
    pairs = [(entry, field_changes(entry.before, entry.after)) for entry in entries]
    user_fields = _user_fields()
    ids = {
        value
        for entry, changes in pairs
        for change in changes
        if change.name in user_fields.get(entry.object_type, ())
        for value in (change.before, change.after)
        if isinstance(value, int)
    }
    if not ids:
        return pairs
    names = dict(get_user_model().objects.filter(pk__in=ids).values_list("pk", "username"))

    def name(value):
        if not isinstance(value, int):
            return value
        return names.get(value, f"deleted user #{value}")

    return [
        (
            entry,
            [
                FieldChange(c.name, name(c.before), name(c.after))
                if c.name in user_fields.get(entry.object_type, ())
                else c
                for c in changes
            ],
        )
        for entry, changes in pairs
    ]


@dataclass
class EntryGroup:
    """The entries one request or command recorded together, newest first."""

    key: str
    size: int
    rows: list = field(default_factory=list)

    @property
    def first(self):
        return self.rows[0][0]

    @property
    def is_bulk(self) -> bool:
        return self.size > 1

    @property
    def hidden(self) -> int:
        return self.size - len(self.rows)

    @property
    def summary(self) -> str:
        """Return e.g. "2,500 create trusted network, 1 publish policy revision"."""
        counts = Counter(" ".join(part for part in (entry.action, entry.object_type) if part) for entry, _ in self.rows)
        if self.hidden:
            return f"the newest {len(self.rows):,} shown: " + ", ".join(
                f"{n:,} {what}" for what, n in counts.most_common()
            )
        return ", ".join(f"{n:,} {what}" for what, n in counts.most_common())


def _group_key():
    # Entries of one request (or one command run) share a request id; an entry without one is its own group,
    # "#<id>": no request id has a "#" (the middleware accepts only [A-Za-z0-9._-] from clients).
    return Coalesce(NullIf(F("request_id"), Value("")), Concat(Value("#"), Cast("id", CharField())))


def grouped(entries):
    """Return a queryset of {"group", "size", "last"} per group of the given entries, newest group first."""
    return (
        entries.annotate(group=_group_key())
        .values("group")
        .annotate(size=Count("id"), last=Max("id"))
        .order_by("-last")
    )


def expand(entries, page) -> list[EntryGroup]:
    """Return the groups of one page of `grouped()`, each with its (first GROUP_PREVIEW) readable entries."""
    groups = [EntryGroup(row["group"], row["size"]) for row in page]
    singles = [int(g.key[1:]) for g in groups if g.key.startswith("#")]
    by_key = {f"#{e.pk}": [e] for e in entries.filter(pk__in=singles)} if singles else {}
    for group in groups:
        if not group.key.startswith("#"):
            by_key[group.key] = list(entries.filter(request_id=group.key).order_by("-id")[:GROUP_PREVIEW])
    flat = [e for g in groups for e in by_key.get(g.key, [])]
    pairs = iter(readable(flat))
    for group in groups:
        group.rows = [next(pairs) for _ in by_key.get(group.key, [])]
    return groups


def choices(entries, name: str) -> list[str]:
    """Return the distinct values of one field of the log, for a filter's dropdown."""
    return list(entries.exclude(**{name: ""}).order_by(name).values_list(name, flat=True).distinct())
