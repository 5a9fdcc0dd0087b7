"""Policy operations, so that views, the API and commands change the policy the same way."""

import contextlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.core.exceptions import ObjectDoesNotExist, ValidationError
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from policy import addresses, audit, bulk_write, locks, revisions, tester
from policy.draft import LIST_KINDS, Draft
from policy.models import (
    ApiToken,
    DeniedNetwork,
    InternalAddress,
    LocalDomain,
    NetworkEntry,
    RelayProfile,
    RoutingRestrictions,
    SmtpUser,
    TrustedNetwork,
)
from policy.roles import can_edit


def apply_routing_draft(draft: Draft, user) -> None:
    """Save the dialog's pending changes in one transaction; on any error save nothing.

    Removals go first so that an entry can be removed and re-added in one draft. Every row
    is validated again against the database, because another admin may have changed it
    since the draft was made.
    """
    # The savepoint undoes the writes when settle() refuses them, inside a request's change too.
    with revisions.policy_change(), transaction.atomic():
        if draft.flags is not None:
            restrictions = RoutingRestrictions.load()
            for name in RoutingRestrictions.FLAG_NAMES:
                setattr(restrictions, name, draft.flags[name])
            restrictions.full_clean()
            restrictions.save()
        for kind, changes in draft.lists.items():
            _apply_list_changes(LIST_KINDS[kind], changes, user)
        revisions.settle()


def draft_snapshot(draft: Draft, user) -> dict:
    """Return the policy as it would be after OK on the dialog's draft; raise ValidationError if OK would fail.

    The draft is applied in a savepoint that is always rolled back, so validation is exactly
    OK's, and nothing is ever written.
    """
    with revisions.rehearsal():
        apply_routing_draft(draft, user)
        return tester.current_snapshot()


def _apply_list_changes(kind, changes: dict, user) -> None:
    model = kind.model
    for key in changes["removed"]:
        model.objects.filter(pk=int(key)).delete()
    for key, data in changes["changed"].items():
        try:
            obj = model.objects.select_for_update().get(pk=int(key))
        except ObjectDoesNotExist:
            raise ValidationError(
                f"{data.get('network') or data.get('address')} was removed by someone else meanwhile."
            ) from None
        _save_entry(obj, data)
    for data in changes["added"].values():
        _save_entry(model(created_by=user), data)


def _save_entry(obj, data: dict) -> None:
    for name, value in data.items():
        if name == "expires_at" and value:
            value = datetime.fromisoformat(value)
        setattr(obj, name, value)
    try:
        # clean() reports duplicates in its own words; the unique constraint still guards races.
        obj.full_clean(validate_unique=False)
    except ValidationError as exc:
        # Name the entry: the page shows these errors above the whole dialog, not beside a field.
        raise ValidationError([f"{obj}: {message}" for message in exc.messages]) from None
    obj.save()


@dataclass(frozen=True)
class PolicySummary:
    """The policy at a glance, for the dashboard."""

    restrictions: RoutingRestrictions
    trusted_active: int
    trusted_inactive: int
    internal_addresses: int
    denied_networks: int
    local_domains: int
    smtp_users: int

    @property
    def verdict(self) -> str:
        """Say in plain words who may relay mail to any domain."""
        # By name: the flags are fields that RoutingRestrictions adds from its FLAGS, unseen by type checkers.
        on = self.restrictions.flag_values()
        who = []
        if on["allow_listed_ips"] and self.trusted_active:
            who.append(_plural(self.trusted_active, "trusted network"))
        if on["allow_authenticated"]:
            who.append("authenticated clients" if self.smtp_users else "authenticated clients (no SMTP users yet)")
        if on["allow_internal_addresses"] and self.internal_addresses:
            who.append(f"clients connecting to {_plural(self.internal_addresses, 'internal address', 'es')}")
        if self.local_domains:
            others = f"may deliver only to the {_plural(self.local_domains, 'local domain')}"
        else:
            others = "may deliver nothing: there are no local domains yet"
        if not who:
            return f"Nobody may relay. Everyone {others}."
        sentence = f"Only {_join(who)} may relay. Everyone else {others}."
        if self.denied_networks:
            sentence += f" Clients in {_plural(self.denied_networks, 'denied network')} never may relay."
        return sentence


def policy_summary() -> PolicySummary:
    active = TrustedNetwork.objects.active()
    return PolicySummary(
        restrictions=RoutingRestrictions.load(),
        trusted_active=active.count(),
        trusted_inactive=TrustedNetwork.objects.count() - active.count(),
        internal_addresses=InternalAddress.objects.count(),
        denied_networks=DeniedNetwork.objects.count(),
        local_domains=LocalDomain.objects.count(),
        smtp_users=SmtpUser.objects.filter(enabled=True).count(),
    )


def _plural(count: int, noun: str, suffix: str = "s") -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}{suffix}"


def _join(parts: list[str]) -> str:
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


IMPORT_MODES = ("add", "replace")
BULK_BATCH = 500  # rows per statement: well inside SQLite's and PostgreSQL's parameter limits


@dataclass
class ImportResult:
    """What a bulk import did (or, in a dry run, would do). With errors, nothing was written."""

    created: int = 0
    updated: int = 0
    deleted: int = 0
    unchanged: int = 0
    warnings: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)  # the networks "replace" removes, in list order
    errors: dict[int, dict[str, list[str]]] = field(default_factory=dict)  # row number (from 1) -> field -> messages

    @property
    def changed(self) -> int:
        return self.created + self.updated + self.deleted

    def summary(self) -> str:
        return f"{self.created} created, {self.updated} updated, {self.deleted} removed, {self.unchanged} unchanged"


def import_networks(model, rows, *, mode="add", dry_run=False, row_errors=None, user=None) -> ImportResult:
    """Add many networks to a list, or replace the whole list with them, all or nothing.

    `rows` holds each row's parsed fields, or None for a row whose fields did not parse (its
    errors come in `row_errors`, by row number from 1), so that one run reports every bad row.
    Each row is checked by the model's clean(), exactly as a single entry is, and against the
    rows before it for duplicates. "replace" updates an entry whose network is already listed,
    removes entries missing from the rows and leaves unchanged entries alone, so the audit log
    shows only real changes. The writes are batched: 10,000 rows take seconds, not minutes.
    """
    if mode not in IMPORT_MODES:
        raise ValueError(f"mode must be one of {IMPORT_MODES}")
    result = ImportResult(errors=dict(row_errors or {}))
    # A dry run reads only: no transaction, which on SQLite would take the write lock.
    with contextlib.nullcontext() if dry_run else transaction.atomic():
        if not dry_run:
            locks.lock_policy()  # nobody changes the list between these checks and the writes
        existing = {obj.network: obj for obj in model.objects.all()}
        batch, before = _validate_rows(model, rows, existing, mode, result, user)
        if result.errors:
            return result
        stale = [obj for network, obj in existing.items() if network not in batch] if mode == "replace" else []
        creates = [obj for obj in batch.values() if obj.pk is None]
        updates = [obj for key, obj in batch.items() if obj.pk is not None and audit.serialize(obj) != before[key]]
        result.created, result.updated, result.deleted = len(creates), len(updates), len(stale)
        result.removed = [obj.network for obj in stale]
        result.unchanged = len(batch) - len(creates) - len(updates)
        kept = batch.values() if mode == "replace" else [*existing.values(), *batch.values()]
        result.warnings = covering_warnings(kept, involving=set(batch))
        if dry_run or not result.changed:
            return result
        _write_batch(model, stale, updates, creates, before)
        audit.record(
            f"bulk_{mode}",
            object_type=str(model._meta.verbose_name),
            object_repr=f"{len(batch)} rows: {result.summary()}",
            after={"created": result.created, "updated": result.updated, "deleted": result.deleted},
        )
        revisions.settle()
    return result


def _write_batch(model, stale, updates, creates, before) -> None:
    """Delete, update and create in a few statements, then audit each object as its own save would.

    The bulk statements send no model signals, so the audit entries and the policy revision
    are recorded here explicitly.
    """
    revisions.note_bulk_write()
    changes: list[tuple[str, object, dict | None, dict | None]] = [
        ("delete", obj, audit.serialize(obj), None) for obj in stale
    ]
    for start in range(0, len(stale), BULK_BATCH):
        chunk = [obj.pk for obj in stale[start : start + BULK_BATCH]]
        # _raw_delete: the one way to delete without per-object signals; nothing refers to these rows.
        model.objects.filter(pk__in=chunk)._raw_delete(model.objects.db)
    fields = [f.name for f in model._meta.concrete_fields if f.name not in ("id", "created_at", "created_by")]
    now = timezone.now()
    for obj in updates:
        obj.updated_at = now  # what save() would set
    bulk_write.update(model, updates, fields)
    changes += [("update", obj, before[obj.network], audit.serialize(obj)) for obj in updates]
    for obj in creates:
        obj.created_at = obj.updated_at = now  # what save() would set
    bulk_write.insert(model, creates)
    changes += [("create", obj, None, audit.serialize(obj)) for obj in creates]
    audit.record_many(changes)


def _validate_rows(model, rows, existing: dict, mode: str, result: ImportResult, user):
    """Return the valid rows as model instances by network, and each replaced entry's audit data before.

    The checks are clean()'s, with duplicates looked up in memory instead of one query per row.
    """
    batch: dict[str, NetworkEntry] = {}
    before: dict[str, dict] = {}
    for number, data in enumerate(rows, 1):
        if data is None:
            continue
        # A row defines its entry completely: fields it leaves out take their defaults.
        obj = model(created_by=user, **data)
        try:
            obj.clean_fields(exclude=["created_by", "network"])  # the network is clean_network()'s
            network = obj.clean_network()
            listed = batch.get(obj.network) or (existing.get(obj.network) if mode == "add" else None)
            if listed is not None:
                raise ValidationError({"network": addresses.duplicate_message(listed.as_listed())}, code="duplicate")
            obj.check_network(network)
            if isinstance(obj, RelayProfile):
                obj.clean_profile()
        except ValidationError as exc:
            result.errors[number] = exc.message_dict
            continue
        replaced = existing.get(obj.network) if mode == "replace" else None
        if replaced is not None:
            obj.pk, obj.created_at, obj.created_by_id = replaced.pk, replaced.created_at, replaced.created_by_id
            obj._state.adding = False
            before[obj.network] = audit.serialize(replaced)
        obj.normalise(network)
        batch[obj.network] = obj
    return batch, before


def covering_warnings(entries, involving: set[str]) -> list[str]:
    """Warn about each entry that a broader one covers, for pairs involving one of these networks.

    One pass over the entries sorted by range, instead of comparing every pair.
    """
    warnings = []
    widest: dict[int, NetworkEntry] = {}  # family -> the entry reaching furthest so far
    # Disabled and expired entries take no effect, so they cover nothing and are covered by nothing.
    entries = [entry for entry in entries if entry.is_active]
    for entry in sorted(entries, key=lambda e: (e.family, e.range_start, -int(e.range_end, 16))):
        cover = widest.get(entry.family)
        if cover is not None and cover.range_end >= entry.range_end:
            if entry.network in involving or cover.network in involving:
                warnings += addresses.overlap_warnings(entry.ip_network, [cover.as_listed()])
        else:
            widest[entry.family] = entry
    return warnings


def network_warnings(obj) -> list[str]:
    """Return the overlap warnings for one saved entry: who covers it, and whom it covers."""
    if not obj.is_active:
        return []
    same_family = type(obj).objects.filter(family=obj.family).exclude(pk=obj.pk)
    related = same_family.filter(
        Q(range_start__lte=obj.range_start, range_end__gte=obj.range_end)
        | Q(range_start__gte=obj.range_start, range_end__lte=obj.range_end)
    )
    return addresses.overlap_warnings(obj.ip_network, [entry.as_listed() for entry in related])


def issue_api_token(user, name: str, *, read_only=False, expires_in_days: int | None = None, node: str = ""):
    """Create an API token and return it with its key: the only time the key exists in clear.

    A token never has more rights than its user: a viewer's token is read-only from the start.
    A node token (node set) is read-only and bound to that relayd node; only an editor may make
    one, because relayd's export holds the SMTP password hashes.
    Raises ValidationError for a name this user already has, or a node token for a non-editor.
    """
    if node and not can_edit(user):
        raise ValidationError(
            {"node": "Only editors may create node tokens: relayd's export holds the SMTP password hashes."}
        )
    token = ApiToken(
        user=user,
        name=name,
        node=node,
        read_only=read_only or bool(node) or not can_edit(user),
        expires_at=timezone.now() + timedelta(days=expires_in_days) if expires_in_days else None,
    )
    key = token.generate_key()
    token.full_clean()
    token.save()
    return token, key
