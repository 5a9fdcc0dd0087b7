"""Downloads of the published policy: relayd's snapshot, and Postfix/Exim bundles.

A person's download is audited (export()). A relayd node fetching its snapshot is not: that is
its job, repeated at every revision by every node, and the audit log records what people do. The
node's row records its last fetch instead (policy.daemons.record_fetch).
"""

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
    """Return the latest revision, recording the current policy first if there is none yet.

    The snapshot text is read only when used: a node that already has this revision gets a 304
    from the serial and hash alone, and a snapshot of 100,000 networks is 20 MB.
    """
    latest = PolicyRevision.objects.defer("snapshot", "inactive").order_by("-serial")
    # commit_revision() gives None when another process recorded the same policy meanwhile.
    return latest.first() or commit_revision() or latest[0]


def export(fmt: str, revision: PolicyRevision | None = None) -> Download:
    """Return one export of a revision (default: the latest) and record the download in the audit log."""
    download = build(fmt, revision or latest_revision())
    record_export(fmt, download.revision)
    return download


def build(fmt: str, revision: PolicyRevision) -> Download:
    """Return one export of a revision, unaudited: for relayd nodes, and for callers that audit it themselves."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r}: choose one of {', '.join(FORMATS)}")
    if fmt == "relayd":
        filename = f"relayd-policy-serial{revision.serial}.json"
        return Download(filename, "application/json", _snapshot(revision), revision)
    name, data = bundle(fmt, revision.snapshot_data)
    return Download(name, "application/gzip", data, revision)


# The last snapshot served, as (sha256, bytes): when a revision commits, every waiting node asks
# for it at once, and all but the first are served without reading it from the database again.
_served: tuple[str, bytes] = ("", b"")


def _snapshot(revision: PolicyRevision) -> bytes:
    global _served
    sha256, body = _served
    if sha256 != revision.sha256:
        body = revision.snapshot.encode()
        _served = (revision.sha256, body)
    return body


def record_export(fmt: str, revision: PolicyRevision) -> None:
    audit.record(
        "export",
        object_type="export",
        object_id=str(revision.serial),
        object_repr=f"{fmt} export of revision {revision.serial}",
        after={"format": fmt, "serial": revision.serial, "sha256": revision.sha256},
    )
