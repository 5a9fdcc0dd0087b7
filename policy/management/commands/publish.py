"""Record the current policy as a revision if it changed, and publish the latest to relayd."""

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from policy.audit import audit_context
from policy.revisions import commit_revision, publish_latest
from policy.snapshot import UnpublishablePolicy


class Command(BaseCommand):
    help = "Record a new policy revision if the policy changed, and write the latest to the relayd policy file."

    def handle(self, *args, **options):
        try:
            with audit_context(source="cli", command="publish"):
                revision = commit_revision()
        except UnpublishablePolicy as exc:
            raise CommandError(exc.messages[0]) from None
        latest = publish_latest()  # also after "unchanged": the file may have been lost
        state = f"recorded revision {revision.serial}" if revision else f"unchanged since revision {latest.serial}"
        self.stdout.write(f"Policy {state}; {settings.RELAYD_POLICY_PATH} holds serial {latest.serial}.")
