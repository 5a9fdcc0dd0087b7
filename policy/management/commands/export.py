"""Write an export of the latest policy revision to a file or a directory."""

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from policy.audit import audit_context
from policy.downloads import FORMATS, export, latest_revision, record_export
from policy.export import render, verify
from relayd.files import write_atomically


class Command(BaseCommand):
    help = (
        "Export the latest policy revision. relayd: a JSON file. postfix/exim: a .tar.gz bundle, or the "
        "files themselves when --output is a directory (hand-edited files are not overwritten without --force)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--format", required=True, choices=FORMATS)
        parser.add_argument("--output", required=True, help="a file (.json, .tar.gz) or, for postfix/exim, a directory")
        parser.add_argument("--force", action="store_true", help="overwrite files that were edited by hand")

    def handle(self, *args, format, output, force, **options):
        target = Path(output)
        if format == "relayd" and target.is_dir():
            raise CommandError(f"{target} is a directory: give the file to write, e.g. {target / 'policy.json'}.")
        with audit_context(source="cli", command="export"):
            if format != "relayd" and target.is_dir():
                return self.write_files(format, target, force)
            download = export(format)
        target.write_bytes(download.body)
        self.stdout.write(f"Wrote {target} ({format}, revision {download.revision.serial}).")

    def write_files(self, fmt, directory, force):
        revision = latest_revision()
        files = render(fmt, revision.snapshot_data)
        edited = [name for name in files if (directory / name).exists() and not verify((directory / name).read_text())]
        if edited and not force:
            raise CommandError(
                f"Refusing to overwrite files edited by hand (or not made by relayadmin): {', '.join(edited)}. "
                "Use --force to overwrite them."
            )
        record_export(fmt, revision)
        for name, content in files.items():
            write_atomically(directory / name, content.encode(), mode=0o640)
        self.stdout.write(f"Wrote {len(files)} files to {directory} ({fmt}, revision {revision.serial}).")
