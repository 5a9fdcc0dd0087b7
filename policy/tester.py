"""Answer "would this relay?" with relayd's own decision function, on the saved policy or a draft."""

from dataclasses import dataclass
from datetime import UTC, datetime

from policy.export.differences import all_differences
from policy.models import PolicyRevision
from policy.revisions import rehearsal
from policy.snapshot import build_snapshot
from relayd import profiles
from relayd.config import compile_policy, validate_snapshot
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


def current_snapshot() -> dict:
    """Return the saved policy as relayd would receive it."""
    latest = PolicyRevision.objects.order_by("-serial").values_list("serial", flat=True).first()
    return build_snapshot(serial=latest or 1)


def draft_snapshot(draft, user) -> dict:
    """Return the policy as it would be after OK on the dialog's draft; raise ValidationError if OK would fail.

    The draft is applied in a savepoint that is always rolled back, so validation is exactly
    OK's, and nothing is ever written.
    """
    from policy.services import apply_routing_draft

    with rehearsal():
        apply_routing_draft(draft, user)
        return current_snapshot()


def check(probe: Probe, snapshot: dict | None = None) -> CheckResult:
    """Return relayd's verdict on the probe under a snapshot (default: the saved policy)."""
    snapshot = snapshot or current_snapshot()
    policy = compile_policy(validate_snapshot(snapshot))
    notes = ()
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
