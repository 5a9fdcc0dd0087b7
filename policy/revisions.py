"""Every committed policy change becomes a PolicyRevision, which is then published to relayd.

A change runs inside `policy_change()`: one transaction in which the first policy write takes
the policy lock, and whose end records the revision while still holding it. So serials never
repeat and a revision never mixes two writers' edits. Web and API requests get this from
`PolicyChangeMiddleware`, commands from `policy_change()` itself. A write outside any change
(a Django shell, a test) still gets its revision, built right after it commits.
"""

import contextlib
import contextvars
import fcntl
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.db import connection, transaction
from django.db.models.signals import post_delete, post_save, pre_delete, pre_save

from policy import audit, revision_feed
from policy.daemons import node_schemas
from policy.locks import lock_audit_chain, lock_policy
from policy.models import PolicyRevision, RelayNode
from policy.restore import inactive_state, restore_snapshot
from policy.snapshot import (
    UnpublishablePolicy,
    build_snapshot,
    check_fleet,
    check_publishable,
    dumps,
    policy_content,
    published_form,
)
from relayd.config import COMPACT_SCHEMA
from relayd.files import write_atomically


@dataclass
class _Change:
    locked: bool = False
    dirty: bool = False


_active: contextvars.ContextVar[_Change | None] = contextvars.ContextVar("policy_change", default=None)


@contextlib.contextmanager
def policy_change():
    """Group the policy writes inside into one transaction and at most one new revision."""
    if _active.get() is not None:
        yield
        return
    change = _Change()
    token = _active.set(change)
    try:
        with transaction.atomic():
            yield
            if change.dirty:
                record_revision()
    finally:
        _active.reset(token)


@contextlib.contextmanager
def rehearsal():
    """Run policy writes that are always rolled back: a dry run that leaves no revision behind."""
    token = _active.set(_Change())  # the writes inside belong to a throwaway change
    try:
        with transaction.atomic():
            yield
            transaction.set_rollback(True)
    finally:
        _active.reset(token)


@contextlib.contextmanager
def undoable():
    """Run policy writes in a savepoint; when it rolls back, they never happened (and make no revision)."""
    change = _active.get()
    dirty = change.dirty if change is not None else False
    try:
        with transaction.atomic():
            yield
    except BaseException:
        if change is not None:
            change.dirty = dirty
        raise


def unrecorded_writes() -> bool:
    """Tell whether policy writes wait for their revision, so the database is ahead of the latest revision.

    They do inside a change with writes not yet settled, and after a write outside any change until it commits.
    """
    change = _active.get()
    if change is not None:
        return change.dirty
    # Django 5 keeps (savepoint ids, callback, robust); the stubs still say pairs.
    return any(callback is _revision_after_commit for _, callback, _ in connection.run_on_commit)  # type: ignore[misc]


def uncommitted_writes() -> bool:
    """Tell whether the current change has written to the policy: its revisions may still roll back."""
    change = _active.get()
    return change is not None and (change.locked or change.dirty)


def watch(model) -> None:
    """Make every write of this model part of the policy (and so of the next revision)."""
    uid = f"revision-{model._meta.label}"
    pre_save.connect(_before_write, sender=model, dispatch_uid=uid)
    pre_delete.connect(_before_write, sender=model, dispatch_uid=uid)
    post_save.connect(_after_write, sender=model, dispatch_uid=uid)
    post_delete.connect(_after_write, sender=model, dispatch_uid=uid)


def settle() -> None:
    """Record the revision of the current change's writes now, still inside its transaction.

    A policy relayd would refuse then raises UnpublishablePolicy here, where the caller can show
    it beside its form, rather than when the change ends. Later writes make another revision.
    """
    change = _active.get()
    if change is not None and change.dirty:
        record_revision()
        change.dirty = False


def note_bulk_write() -> None:
    """Make writes that send no model signals (`bulk_create`) part of the current change.

    Call it before such writes: it takes the policy lock as a first save would.
    """
    _before_write(sender=None)
    _after_write(sender=None)


def _before_write(sender, raw=False, **kwargs):
    change = _active.get()
    if change is not None and not change.locked and not raw:
        lock_policy()
        change.locked = True


def _after_write(sender, raw=False, **kwargs):
    if raw:
        return
    change = _active.get()
    if change is not None:
        change.dirty = True
    elif not any(callback is _revision_after_commit for _, callback, _ in connection.run_on_commit):
        transaction.on_commit(_revision_after_commit)


def _revision_after_commit() -> None:
    commit_revision()


def commit_revision() -> PolicyRevision | None:
    """Record the current policy as a revision in a transaction of its own, if it changed."""
    with transaction.atomic():
        lock_policy()
        return record_revision()


def record_revision(rolled_back_to: int | None = None) -> PolicyRevision | None:
    """Record the current policy as the next revision, unless it equals the latest one.

    The caller holds the policy lock inside a transaction. Publishing follows the commit.
    """
    latest = PolicyRevision.objects.order_by("-serial").first()
    snapshot = build_snapshot(serial=latest.serial + 1 if latest else 1)
    if latest is not None and policy_content(latest.snapshot_data) == policy_content(snapshot):
        # The same policy: a new revision only to take compact lists back from a node that cannot read them.
        compact = latest.snapshot_data["schema"] >= COMPACT_SCHEMA
        if not compact or published_form(snapshot)["schema"] >= COMPACT_SCHEMA:
            return None
    # Every node that enforces this revision keeps the audit chain's length and head as a witness
    # that the log cannot later be shortened or rewritten unnoticed (verify_audit --against).
    lock_audit_chain()
    snapshot["audit"] = audit.anchor()
    snapshot = published_form(snapshot)
    text = dumps(snapshot)
    check_publishable(snapshot, text)  # raises, and the caller's transaction rolls the change back
    check_fleet(snapshot)  # likewise, while a reporting node could not enforce the snapshot's schema
    context = audit.current_context()
    revision = PolicyRevision.objects.create(
        serial=snapshot["serial"],
        snapshot=text,
        sha256=hashlib.sha256(text.encode()).hexdigest(),
        created_by=context.user if context.user is not None and context.user.is_authenticated else None,
        created_by_name=context.actor_name,
        source=context.source,
        reason=context.reason,
        rolled_back_to=rolled_back_to,
        inactive=inactive_state(),
    )
    audit.record(
        "rollback" if rolled_back_to else "publish",
        obj=revision,
        after={"serial": revision.serial, "sha256": revision.sha256, "rolled_back_to": rolled_back_to},
    )
    transaction.on_commit(publish_latest)
    revision_feed.announce()
    return revision


def republish_for(node: RelayNode) -> PolicyRevision | None:
    """Record the policy again, in lists of objects, if node just refused the latest revision for its compact lists.

    A relayd older than schema 3 that was silent when a compact revision was recorded refuses it
    when it comes back, and would go on enforcing its old policy, trusted networks since removed
    included, until the next change. Return the new revision, or None when none was needed.
    """
    # Every report comes here: most refuse nothing, and need no query.
    if node.refused_serial is None or COMPACT_SCHEMA in node_schemas(node):
        return None
    latest = PolicyRevision.objects.defer("snapshot", "inactive").order_by("-serial").first()
    if latest is None or node.refused_serial != latest.serial:
        return None
    with audit.audit_context(source="system", command=f"republish: node {node.name} reads no compact lists"):
        try:
            return commit_revision()
        except UnpublishablePolicy:
            # The policy needs a schema some reporting node lacks (relay profiles on a schema-1
            # node, say): no form helps, and the dashboard shows that node as refusing.
            return None


def publish_latest() -> PolicyRevision | None:
    """Write the latest revision to the relayd policy file, never replacing a newer one."""
    revision = PolicyRevision.objects.order_by("-serial").first()
    if revision is None:
        return None
    path = Path(settings.RELAYD_POLICY_PATH)
    # No access for others: the snapshot holds the SMTP password hashes (the file itself is 0640,
    # so that a relayd running as another user of the group may read it).
    path.parent.mkdir(mode=0o750, parents=True, exist_ok=True)
    # Two processes may publish at once; the lock keeps a slower, older write from landing last.
    with open(path.parent / ".publish.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _published_serial(path) < revision.serial:
            write_atomically(path, revision.snapshot.encode(), mode=0o640)
    return revision


def _published_serial(path: Path) -> int:
    try:
        return int(json.loads(path.read_text())["serial"])
    except (OSError, ValueError, KeyError, TypeError):
        return 0


def rollback_to(serial: int) -> PolicyRevision | None:
    """Restore the enforced policy of an earlier revision as a new revision, audited as a rollback.

    Return None when the policy already equals that revision.
    """
    target = PolicyRevision.objects.get(serial=serial)
    with policy_change():
        lock_policy()
        restore_snapshot(target.snapshot_data, target.inactive)
        change = _active.get()
        if change is not None:  # policy_change() just set it
            change.dirty = False  # recorded here, so that the caller gets the new revision
        return record_revision(rolled_back_to=serial)
