"""Downloads of the published policy: relayd's snapshot, and Postfix/Exim bundles. Each is audited."""

from dataclasses import dataclass

from policy import audit
from policy.export import TARGETS, bundle
from policy.models import PolicyRevision
from policy.revisions import commit_revision

FORMATS = ("relayd", *TARGETS)


@dataclass(frozen=True)
class Download:
    filename: str
    content_type: str
    body: bytes
    revision: PolicyRevision


def latest_revision() -> PolicyRevision:
    """Return the latest revision, recording the current policy first if there is none yet."""
    latest = PolicyRevision.objects.order_by("-serial")
    # commit_revision() gives None when another process recorded the same policy meanwhile.
    return latest.first() or commit_revision() or latest[0]


def export(fmt: str, revision: PolicyRevision | None = None) -> Download:
    """Return one export of a revision (default: the latest) and record the download in the audit log."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r}: choose one of {', '.join(FORMATS)}")
    revision = revision or latest_revision()
    if fmt == "relayd":
        download = Download(
            f"relayd-policy-serial{revision.serial}.json", "application/json", revision.snapshot.encode(), revision
        )
    else:
        name, data = bundle(fmt, revision.snapshot_data)
        download = Download(name, "application/gzip", data, revision)
    record_export(fmt, revision)
    return download


def record_export(fmt: str, revision: PolicyRevision) -> None:
    audit.record(
        "export",
        object_type="export",
        object_id=str(revision.serial),
        object_repr=f"{fmt} export of revision {revision.serial}",
        after={"format": fmt, "serial": revision.serial, "sha256": revision.sha256},
    )
