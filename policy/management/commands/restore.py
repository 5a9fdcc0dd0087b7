"""Restore a backup written by manage.py backup into this database and var/ (policy/backup.py)."""

from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

from policy.audit import ChainBroken
from policy.backup import BackupError, restore_backup


class Command(BaseCommand):
    help = (
        "Restore a backup: migrate, load its rows and write its secrets into var/, then verify the audit chain. "
        "Refuses a database that already holds users, revisions or audit entries unless --force."
    )

    def add_arguments(self, parser):
        parser.add_argument("path", metavar="PATH", help="a backup file written by manage.py backup")
        parser.add_argument("--force", action="store_true", help="wipe this database first, even though it holds data")

    def handle(self, *args, path, force, **options):
        call_command("migrate", interactive=False, verbosity=0)
        try:
            restored = restore_backup(path, force=force)
        except (BackupError, ChainBroken) as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(
            self.style.SUCCESS(
                f"Restored {restored.rows} rows and revision {restored.serial or 'none'}; the audit chain of "
                f"{restored.audit_entries} entries verifies. Wrote {len(restored.secrets)} secret file(s)."
            )
        )
