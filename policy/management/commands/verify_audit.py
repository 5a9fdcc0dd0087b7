"""Walk the audit hash chain and report the first broken link."""

from django.core.management.base import BaseCommand, CommandError

from policy.audit import GENESIS_HASH, entry_hash
from policy.models import AuditEntry


class Command(BaseCommand):
    help = "Verify the audit log's hash chain. Exits non-zero at the first broken link."

    def handle(self, *args, **options):
        expected_prev = GENESIS_HASH
        count = 0
        for entry in AuditEntry.objects.order_by("id").iterator(chunk_size=2000):
            if entry.prev_hash != expected_prev:
                raise CommandError(
                    f"Broken link at entry {entry.pk} ({entry}): it does not follow the entry before it; "
                    "an entry was deleted, inserted or reordered."
                )
            if entry_hash(entry) != entry.entry_hash:
                raise CommandError(f"Broken link at entry {entry.pk} ({entry}): its contents were changed.")
            expected_prev = entry.entry_hash
            count += 1
        self.stdout.write(self.style.SUCCESS(f"Audit chain intact: {count} entries verified."))
