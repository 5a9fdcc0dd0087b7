"""The audit log: one mechanism records every policy change, whoever or whatever makes it.

Who is acting comes from a context variable: the middleware fills it for web requests, the
API fills in the token it authenticated, and management commands open `audit_context(source="cli")`.
What changed comes from model signals (`track`), so views, the API, imports and commands
cannot forget to record. Saves that change nothing are not recorded.
"""

import contextlib
import contextvars
import hashlib
import hmac
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import models, transaction
from django.db.models.signals import m2m_changed, post_delete, post_save, pre_save

from policy import bulk_write
from policy.locks import lock_audit_chain

if TYPE_CHECKING:
    from django.contrib.auth.models import AnonymousUser, User
# Fields that would only add noise or leak secrets; secrets are recorded as a fingerprint instead.
NOISE_FIELDS = {"created_at", "updated_at", "last_login", "range_start", "range_end", "family"}


@dataclass(frozen=True)
class AuditContext:
    """Who is acting, from where, and why."""

    source: str = "system"
    user: "User | AnonymousUser | None" = None
    token: str = ""  # the API token's public name, never its secret
    command: str = ""  # "system: COMMAND" actor for management commands
    remote_addr: str | None = None
    request_id: str = ""
    reason: str = ""

    @property
    def actor_name(self) -> str:
        if self.user is not None and getattr(self.user, "is_authenticated", False):
            name = self.user.get_username()
            return f"{name} (token {self.token})" if self.token else name
        if self.command:
            return f"system: {self.command}"
        return "system"


_NO_CONTEXT = AuditContext()  # frozen, so sharing it as the default is safe
_current: contextvars.ContextVar[AuditContext] = contextvars.ContextVar("audit_context", default=_NO_CONTEXT)


def current_context() -> AuditContext:
    return _current.get()


@contextlib.contextmanager
def audit_context(**fields) -> Iterator[AuditContext]:
    """Act with these context fields (source, user, token, command, remote_addr, request_id, reason)."""
    token = _current.set(replace(_current.get(), **fields))
    try:
        yield _current.get()
    finally:
        _current.reset(token)


def update_context(**fields) -> None:
    """Refine the current context, e.g. once the API has authenticated its token."""
    _current.set(replace(_current.get(), **fields))


GENESIS_HASH = "0" * 64


@dataclass(frozen=True)
class TrackSpec:
    exclude: frozenset = frozenset()
    secrets: frozenset = frozenset()
    m2m: tuple = ()


_tracked: dict[type[models.Model], TrackSpec] = {}


def track(model, *, exclude: Iterable[str] = (), secrets: Iterable[str] = (), m2m: Iterable[str] = ()) -> None:
    """Record every create, real update and delete of this model.

    `secrets` (password hashes, token digests) are recorded as a short fingerprint, so the log
    shows that a secret changed without ever holding it.
    """
    _tracked[model] = TrackSpec(frozenset(exclude), frozenset(secrets), tuple(m2m))
    uid = f"audit-{model._meta.label}"
    pre_save.connect(_remember_before, sender=model, dispatch_uid=uid)
    post_save.connect(_record_save, sender=model, dispatch_uid=uid)
    post_delete.connect(_record_delete, sender=model, dispatch_uid=uid)
    for name in m2m:
        m2m_changed.connect(_record_m2m, sender=getattr(model, name).through, dispatch_uid=f"{uid}-{name}")


# Values that JSON takes as they are; anything else (dates, lists, decimals) goes through the encoder.
_JSON_SCALARS = (str, int, bool, float, type(None))


def serialize(instance) -> dict:
    """Return the tracked fields of an instance as JSON-safe data."""
    from django.core.serializers.json import DjangoJSONEncoder

    spec = _tracked.get(type(instance), TrackSpec())
    data = {}
    for field in instance._meta.concrete_fields:
        if field.name in NOISE_FIELDS or field.name in spec.exclude or field.primary_key:
            continue
        value = field.value_from_object(instance)
        if field.name in spec.secrets:
            value = fingerprint(value) if value else ""
        elif type(value) not in _JSON_SCALARS:
            # A round trip through JSON: the entry holds a copy, in the form it is stored and hashed in.
            value = json.loads(json.dumps(value, cls=DjangoJSONEncoder))
        data[field.name] = value
    if instance.pk is not None:
        for name in spec.m2m:
            data[name] = sorted(str(related) for related in getattr(instance, name).all())
    return data


def fingerprint(secret: str) -> str:
    return "sha256:" + hashlib.sha256(secret.encode()).hexdigest()[:12]


def record(action: str, *, obj=None, before=None, after=None, object_type="", object_id="", object_repr=""):
    """Append one entry to the chain, acting as the current context."""
    from policy.models import AuditEntry

    entry = _new_entry(action, obj, before, after, object_type, object_id, object_repr, actor=_actor())
    with transaction.atomic():
        lock_audit_chain()
        entry.prev_hash = (
            AuditEntry.objects.order_by("-id").values_list("entry_hash", flat=True).first() or GENESIS_HASH
        )
        entry.entry_hash = entry_hash(entry)
        entry.save()
    return entry


def _new_entry(action, obj, before, after, object_type="", object_id="", object_repr="", *, actor: dict):
    """Return an unsaved, unchained entry made by `actor` (see _actor())."""
    from policy.models import AuditEntry

    if obj is not None:
        object_type = object_type or str(obj._meta.verbose_name)
        object_id = object_id or str(obj.pk)
        object_repr = object_repr or str(obj)[:300]
    return AuditEntry(
        action=action,
        object_type=object_type,
        object_id=object_id,
        object_repr=object_repr,
        before=before,
        after=after,
        **actor,
    )


def _actor() -> dict:
    """Return the entry fields that say who acts, from where and why: the current context's."""
    context = current_context()
    user = context.user if getattr(context.user, "is_authenticated", False) else None
    return {
        "actor_username": user.get_username() if user is not None else "",
        "actor_name": context.actor_name,
        "source": context.source,
        "remote_addr": context.remote_addr,
        "request_id": context.request_id,
        "reason": context.reason,
    }


MISSING_KEY = (
    "The audit key is missing: set RELAYADMIN_AUDIT_KEY, or restore var/audit_key from the backup"
    " (manage.py restore brings it back)"
)


def entry_hash(entry) -> str:
    """Return the HMAC-SHA256 over every field of the entry and the previous entry's hash.

    The key (settings.AUDIT_KEY) lives outside the database, so whoever can only write the
    database cannot rewrite an entry and recompute the chain after it.
    """
    payload = {
        "timestamp": entry.timestamp.isoformat(timespec="microseconds"),
        "actor_username": entry.actor_username,
        "actor_name": entry.actor_name,
        "source": entry.source,
        "remote_addr": entry.remote_addr,
        "request_id": entry.request_id,
        "action": entry.action,
        "object_type": entry.object_type,
        "object_id": entry.object_id,
        "object_repr": entry.object_repr,
        "before": entry.before,
        "after": entry.after,
        "reason": entry.reason,
        "prev_hash": entry.prev_hash,
    }
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    if not settings.AUDIT_KEY:
        # An empty HMAC key would let anyone recompute the chain: refuse rather than write or check with it.
        raise ImproperlyConfigured(MISSING_KEY)
    return hmac.new(settings.AUDIT_KEY.encode(), canonical.encode(), hashlib.sha256).hexdigest()


def anchor() -> dict:
    """Return the chain's length and head hash, the witness each published snapshot carries.

    The caller holds lock_audit_chain(), so that no entry slips in between the count and the head.
    """
    from policy.models import AuditEntry

    head = AuditEntry.objects.order_by("-id").values_list("entry_hash", flat=True).first()
    return {"count": AuditEntry.objects.count(), "head": head or GENESIS_HASH}


@dataclass(frozen=True)
class Witness:
    """What a published snapshot saw of the chain: its first `count` entries ended in `head`."""

    count: int
    head: str
    source: str  # where the witness was found, for the messages

    @classmethod
    def from_snapshot(cls, snapshot: object, source: str) -> "Witness":
        """Return the anchor of a snapshot that relayd would accept; raise ValueError if it is not one or has none."""
        from relayd.config import SnapshotError, validate_snapshot

        try:
            validated = validate_snapshot(snapshot)
        except SnapshotError as exc:
            raise ValueError(f"{source} is not a snapshot relayd would accept: {exc}") from None
        source = f"{source} (serial {validated.serial})"
        if validated.audit is None:
            raise ValueError(f"{source} carries no audit anchor (it was published before anchors existed)")
        return cls(validated.audit.count, validated.audit.head, source)


# When the very first entry fails, a changed key is likelier than tampering.
_WRONG_KEY_HINT = " (or the audit key, RELAYADMIN_AUDIT_KEY or var/audit_key, is not the one it was written with)"


class ChainBroken(Exception):
    """The audit log was changed; the message says where and how."""


def verify_chain(witnesses: Iterable[Witness] = ()) -> int:
    """Walk the chain from its start and return its length; raise ChainBroken at the first break.

    A break is an entry that does not follow the one before it, an entry whose contents changed,
    or a witness that saw a longer or different chain than the one there now.
    """
    from policy.models import AuditEntry

    witnesses = list(witnesses)
    by_count: dict[int, list[Witness]] = {}
    for witness in witnesses:
        by_count.setdefault(witness.count, []).append(witness)
    expected_prev = GENESIS_HASH
    count = 0
    for witness in by_count.get(0, ()):
        _check_witness(witness, GENESIS_HASH, None)
    for entry in AuditEntry.objects.order_by("id").iterator(chunk_size=2000):
        if entry.prev_hash != expected_prev:
            raise ChainBroken(
                f"Broken link at entry {entry.pk} ({entry}): it does not follow the entry before it; "
                "an entry was deleted, inserted or reordered."
            )
        if entry_hash(entry) != entry.entry_hash:
            hint = "" if count else _WRONG_KEY_HINT
            raise ChainBroken(f"Broken link at entry {entry.pk} ({entry}): its contents were changed{hint}.")
        expected_prev = entry.entry_hash
        count += 1
        for witness in by_count.get(count, ()):
            _check_witness(witness, entry.entry_hash, entry)
    for witness in witnesses:
        if witness.count > count:
            raise ChainBroken(
                f"The audit log holds {count} entries, but {witness.source} witnessed {witness.count}: "
                "entries were deleted from its end."
            )
    return count


def _check_witness(witness: Witness, head: str, entry) -> None:
    if not hmac.compare_digest(witness.head, head):
        at = f"entry {entry.pk} ({entry})" if entry is not None else "the empty log"
        raise ChainBroken(
            f"The chain's entry number {witness.count}, {at}, is not the one {witness.source} witnessed: "
            "the log was rewritten."
        )


def _remember_before(sender, instance, raw=False, **kwargs):
    if raw or instance.pk is None:
        return
    saved = sender._default_manager.filter(pk=instance.pk).first()
    instance._audit_before = serialize(saved) if saved is not None else None


def _record_save(sender, instance, created, raw=False, **kwargs):
    if raw:
        return
    after = serialize(instance)
    before = getattr(instance, "_audit_before", None)
    instance._audit_before = after
    if created or before is None:
        record("create", obj=instance, after=after)
    elif before != after:
        record("update", obj=instance, before=before, after=after)


def _record_delete(sender, instance, **kwargs):
    record("delete", obj=instance, before=serialize(instance))


# Set while a backup's rows are loaded (policy/backup.py): they come with their own entries.
# Django's loaddata marks saves raw, which the receivers above skip, but not the m2m sets it makes.
_loading_backup: contextvars.ContextVar[bool] = contextvars.ContextVar("loading_backup", default=False)


@contextlib.contextmanager
def loading_backup() -> Iterator[None]:
    """Load rows that already have their audit entries: many-to-many sets record nothing new."""
    token = _loading_backup.set(True)
    try:
        yield
    finally:
        _loading_backup.reset(token)


def _record_m2m(sender, instance, action, reverse, **kwargs):
    if reverse or type(instance) not in _tracked or _loading_backup.get():
        return
    if action.startswith("pre_"):
        instance._audit_before = serialize(instance)
    elif action.startswith("post_"):
        _record_save(type(instance), instance, created=False)


def record_many(changes: Iterable[tuple[str, object, dict | None, dict | None]]) -> int:
    """Append one entry per (action, obj, before, after), in order, as one batch; return the count.

    For bulk writes that send no model signals (`bulk_create`): the chain comes out exactly as
    if each object had been saved on its own, but with one insert per batch instead of per row.
    """
    from policy.models import AuditEntry

    actor = _actor()  # one context for the whole batch
    entries = [_new_entry(action, obj, before, after, actor=actor) for action, obj, before, after in changes]
    if not entries:
        return 0
    with transaction.atomic():
        lock_audit_chain()
        prev_hash = AuditEntry.objects.order_by("-id").values_list("entry_hash", flat=True).first() or GENESIS_HASH
        for entry in entries:
            entry.prev_hash = prev_hash
            entry.entry_hash = prev_hash = entry_hash(entry)
        # Ids follow list order, which is the order verify_audit walks.
        bulk_write.insert(AuditEntry, entries)
    return len(entries)
