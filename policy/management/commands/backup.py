"""Write a backup of the database and the secrets under var/ (policy/backup.py)."""

from django.core.management.base import BaseCommand, CommandError

from policy.backup import BackupError, write_backup


class Command(BaseCommand):
    help = (
        "Back up the policy, revisions, audit log, users, tokens and reputation data, with the secret key, the "
        "audit key and relayd's TLS key, into PATH (a new file, mode 0600). Keep it as safe as the keys."
    )

    def add_arguments(self, parser):
        parser.add_argument("path", metavar="PATH", help="the backup file to create (.tar.gz)")

    def handle(self, *args, path, **options):
        try:
            manifest = write_backup(path)
        except BackupError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(
            self.style.SUCCESS(
                f"Backed up {manifest['rows']} rows, revision {manifest['serial'] or 'none'} and "
                f"{manifest['audit']['count']} audit entries to {path} (it holds secrets: keep it safe)."
            )
        )
