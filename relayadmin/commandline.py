"""Run Django management commands: `manage.py` in a checkout, the `relayadmin` console script when installed."""

import os
import sys


def main() -> None:
    """Run the management command named on the command line, audited as "system: COMMAND"."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "relayadmin.settings")
    from django.core.management import execute_from_command_line

    from policy.audit import audit_context

    # Any command run from a shell acts as "system: COMMAND" in the audit log
    # (createsuperuser, changepassword, shell, ... as well as our own).
    command = sys.argv[1] if len(sys.argv) > 1 else ""
    with audit_context(source="cli", command=command):
        execute_from_command_line(sys.argv)
