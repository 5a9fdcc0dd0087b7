"""Walk the audit chain, check it against the witnesses published snapshots carry, report the first break."""

import json
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from policy.audit import MISSING_KEY, ChainBroken, Witness, verify_chain
from policy.models import AuditEntry, PolicyRevision


class Command(BaseCommand):
    help = (
        "Verify the audit log's HMAC chain, and that it still holds what the latest revision and each "
        "--against snapshot witnessed. Exits non-zero at the first break."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--against",
            action="append",
            default=[],
            metavar="SNAPSHOT",
            help="a published snapshot file (e.g. a relayd node's policy.json) whose audit anchor the log "
            "must still match; detects deleted newest entries and rewrites. May be given more than once.",
        )

    def handle(self, *args, against, **options):
        self._check_key()
        witnesses = [self._witness_from_file(path) for path in against]
        latest = PolicyRevision.objects.order_by("-serial").first()
        if latest is not None and "audit" in latest.snapshot_data:
            witnesses.append(_witness(latest.snapshot_data, "the latest revision"))
        try:
            count = verify_chain(witnesses)
        except ChainBroken as exc:
            raise CommandError(str(exc)) from None
        checked = f"; it matches {len(witnesses)} published anchor(s)" if witnesses else ""
        self.stdout.write(self.style.SUCCESS(f"Audit chain intact: {count} entries verified{checked}."))

    def _check_key(self) -> None:
        """Refuse to verify without the key the chain was written with; never keep a key made just now."""
        if not settings.AUDIT_KEY:
            raise CommandError(f"{MISSING_KEY}.")
        if "audit_key" in settings.GENERATED_SECRETS and AuditEntry.objects.exists():
            # Loading the settings generated var/audit_key: the key the log was written with is lost
            # (a restore without the secrets?). A new key can only fail every entry, and must not
            # stay for the dashboard to write with.
            (settings.VAR_DIR / "audit_key").unlink(missing_ok=True)
            raise CommandError(f"{MISSING_KEY}: var/audit_key did not exist, and a new key cannot verify the log.")

    def _witness_from_file(self, path: str) -> Witness:
        try:
            document = json.loads(Path(path).read_text())
        except OSError as exc:
            raise CommandError(f"Cannot read the snapshot {path}: {exc.strerror}.") from None
        except ValueError as exc:
            raise CommandError(f"{path} is not a JSON snapshot: {exc}.") from None
        return _witness(document, path)


def _witness(snapshot, source: str) -> Witness:
    try:
        return Witness.from_snapshot(snapshot, source)
    except ValueError as exc:
        raise CommandError(f"{exc}.") from None
