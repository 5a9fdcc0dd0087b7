"""Import a CSV file of networks into the trusted list or the NEVER list, all or nothing."""

import contextlib
import uuid
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from policy import network_csv, safety, services
from policy.audit import audit_context
from policy.revisions import policy_change
from policy.snapshot import UnpublishablePolicy


class Command(BaseCommand):
    help = (
        "Import networks from a CSV file (the columns of the UI's export) into a list. Every row is checked "
        "first; with any bad row nothing is changed."
    )

    def add_arguments(self, parser):
        parser.add_argument("file", help="CSV file, UTF-8, first line the column names")
        parser.add_argument("--list", required=True, choices=sorted(network_csv.LISTS), dest="network_list")
        parser.add_argument("--mode", choices=services.IMPORT_MODES, default="add", help="add (default) or replace")
        parser.add_argument("--dry-run", action="store_true", help="check and report, change nothing")
        parser.add_argument(
            "--confirm-open-relay",
            action="store_true",
            help="import even though the result makes the server an open relay",
        )

    def handle(self, *args, file, network_list, mode, dry_run, confirm_open_relay=False, **options):
        target = network_csv.LISTS[network_list]
        try:
            parsed = network_csv.read(network_csv.decode(Path(file).read_bytes()), target)
        except (OSError, network_csv.CsvError) as exc:
            raise CommandError(str(exc)) from None
        # A dry run writes nothing: it takes no write lock and needs no open-relay guard.
        change = contextlib.nullcontext() if dry_run else policy_change()
        guard = contextlib.nullcontext() if dry_run else safety.guard(confirmed=confirm_open_relay)
        try:
            with (
                audit_context(
                    # One id for the whole run, so that the audit log shows the import as one change.
                    source="cli",
                    command="import_networks",
                    reason=f"CSV import of {file}",
                    request_id=uuid.uuid4().hex,
                ),
                change,
                guard,
            ):
                result = services.import_networks(
                    target.model, parsed.rows, mode=mode, dry_run=dry_run, row_errors=parsed.errors
                )
        except UnpublishablePolicy as exc:
            raise CommandError(exc.messages[0]) from None
        except safety.DangerousChange as exc:
            raise CommandError(
                f"Nothing was imported: the result makes the server an open relay. {exc} "
                "Add --confirm-open-relay to import it anyway."
            ) from None
        for row, errors in sorted(result.errors.items()):
            for field, messages in errors.items():
                self.stderr.write(f"line {parsed.line(row)}: {field}: {' '.join(messages)}")
        if result.errors:
            raise CommandError(f"{len(result.errors)} bad rows: nothing was imported.")
        for warning in result.warnings:
            self.stdout.write(f"warning: {warning}")
        self.stdout.write(f"{'Would import' if dry_run else 'Imported'}: {result.summary()}.")
