"""Answer "would this relay?" with relayd's own decision function, on the saved policy or a draft."""

import threading
from dataclasses import dataclass
from datetime import UTC, datetime

from django.utils import timezone

from policy import snapshot as snapshot_module
from policy.export.differences import all_differences
from policy.models import PolicyRevision
from policy.revisions import uncommitted_writes, unrecorded_writes
from policy.snapshot import build_snapshot
from relayd import profiles
from relayd.compact import read_snapshot
from relayd.config import CompiledPolicy, Snapshot, compile_policy, parse_snapshot, validate_snapshot
from relayd.decision import Verdict, decide


@dataclass(frozen=True)
class Probe:
    """One question to the tester, with addresses already validated."""

    client: str
    recipient: str
    local_address: str | None = None
    authenticated: bool = False


@dataclass(frozen=True)
class CheckResult:
    verdict: Verdict
    notes: tuple[str, ...] = ()


class SavedPolicy:
    """The latest revision as relayd loads it, read once per process: what every node enforces.

    The document is parsed at once (the dashboard's risk analysis needs only it); relayd's
    validation and the compiled policy follow on the first check, which needs them.
    """

    def __init__(self, sha256: str, text: str, previous: "SavedPolicy | None"):
        self.sha256, self.text = sha256, text
        self.document = read_snapshot(text)
        self._previous = previous
        self._compiled: CompiledPolicy | None = None
        self._lock = threading.Lock()

    @property
    def snapshot(self) -> Snapshot:
        return self.compiled.snapshot

    @property
    def compiled(self) -> CompiledPolicy:
        with self._lock:
            if self._compiled is None:
                previous = self._previous._compiled if self._previous is not None else None
                # The last snapshot this process checked before publishing holds most rows already.
                hint = previous.snapshot if previous is not None else snapshot_module.last_checked()
                self._compiled = compile_policy(parse_snapshot(self.text, previous=hint), previous=previous)
                self._previous = None  # the older revision may go
            return self._compiled


_saved: SavedPolicy | None = None
_saved_lock = threading.Lock()


def saved_policy() -> SavedPolicy | None:
    """Return the latest committed revision as relayd loads it, or None when there is none yet.

    It is read once per revision (keyed by its SHA-256, which names its exact text): at 10,000
    entries parsing and compiling take most of a second, which the dashboard and the tester then
    no longer pay on every page.
    """
    global _saved
    latest = PolicyRevision.objects.order_by("-serial").values_list("pk", "sha256").first()
    if latest is None:
        return None
    pk, sha256 = latest
    with _saved_lock:
        cached = _saved
        if cached is not None and cached.sha256 == sha256:
            return cached
        text = PolicyRevision.objects.values_list("snapshot", flat=True).get(pk=pk)
        _saved = SavedPolicy(sha256, text, cached)
        return _saved


def current_snapshot() -> dict:
    """Return the saved policy as relayd would receive it.

    Every policy write is recorded as a revision (policy/revisions.py), so once its writes are
    recorded the latest revision's snapshot is the saved policy: it is read instead of rebuilt
    from 10,000 rows. Entries that expired since it was recorded are left out, as build_snapshot
    leaves them out. Writes not recorded yet (outside a change, before their commit) are read
    from the database. Inside a change with writes, such as the rehearsal of the dialog's draft
    after it settled, the revision it recorded is read but not kept: it may still roll back.
    """
    if unrecorded_writes():
        return _built()
    if uncommitted_writes():
        text = PolicyRevision.objects.order_by("-serial").values_list("snapshot", flat=True).first()
        return _in_force(read_snapshot(text)) if text else _built()
    saved = saved_policy()
    return _in_force(saved.document) if saved else _built()


def _built() -> dict:
    latest = PolicyRevision.objects.order_by("-serial").values_list("serial", flat=True).first()
    return build_snapshot(serial=latest or 1)


def _in_force(document: dict) -> dict:
    now = timezone.now()
    in_force = [
        entry
        for entry in document["trusted_networks"]
        if not entry["expires_at"] or datetime.fromisoformat(entry["expires_at"]) > now
    ]
    if len(in_force) == len(document["trusted_networks"]):
        return document  # the same object for the same revision: risks.analyse() keeps its findings with it
    return {**document, "trusted_networks": in_force}


def compiled(snapshot: dict | None) -> tuple[CompiledPolicy, dict]:
    """Return the compiled policy of a snapshot (default: the saved policy) and the snapshot.

    A draft's snapshot is compiled from the saved policy's, as relayd reloads a changed one:
    only the entries that differ are validated and indexed again.
    """
    # Inside a change with writes the latest revision may not be the saved policy: the last one
    # compiled then only serves as the starting point, which never changes the result.
    pending = unrecorded_writes() or uncommitted_writes()
    saved = _saved if pending else saved_policy()
    if snapshot is None:
        if saved is not None and not pending:
            return saved.compiled, current_snapshot()
        snapshot = current_snapshot()
    previous = saved.snapshot if saved else None
    policy = compile_policy(validate_snapshot(snapshot, previous=previous), previous=saved.compiled if saved else None)
    return policy, snapshot


def check(probe: Probe, snapshot: dict | None = None) -> CheckResult:
    """Return relayd's verdict on the probe under a snapshot (default: the saved policy)."""
    policy, snapshot = compiled(snapshot)
    notes: tuple[str, ...] = ()
    login = None
    if probe.authenticated:
        # Stand for "authenticated" with an account relayd would accept, as a real client logs in.
        if snapshot["smtp_users"]:
            login = snapshot["smtp_users"][0]["username"]
        else:
            notes = ("There is no enabled SMTP user, so no client can authenticate: tested as unauthenticated.",)

    def accepts(path: str) -> bool:
        return decide(policy, probe.client, probe.local_address, login, path).allowed

    # Where the Postfix or Exim export would answer otherwise, say so (docs/verdicts.md).
    notes += all_differences(probe.recipient, accepts)
    verdict = decide(policy, probe.client, probe.local_address, login, probe.recipient)
    return CheckResult(verdict, notes + profile_notes(policy, verdict, probe.client, login))


def profile_notes(policy, verdict: Verdict, client: str, login: str | None) -> tuple[str, ...]:
    """Say whose relay profile limits a relayed recipient, as relayd would apply it (issue 15).

    The tester sees no sender, session or counter: it names the limits, which relayd checks when
    the mail comes ("trusted network 10.1.0.0/16: limit 100 messages/hour").
    """
    found = profiles.holder(policy, verdict, client, login, datetime.now(UTC))
    if found is None or found.profile is None:
        return ()
    return (f"{found.label}: limit {profiles.limits_text(found.profile)}; relayd counts per clock hour.",)
