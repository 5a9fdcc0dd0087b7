"""Run the open-relay self-test against an SMTP server; exit 0 if it is not an open relay, 2 if it is."""

import sys

from django.core.management.base import BaseCommand, CommandError

from policy.audit import audit_context
from policy.selftests import SelfTestRefused, default_target, run_selftest


class Command(BaseCommand):
    help = "Run the open-relay battery against HOST:PORT (default: the bundled relayd). Exit 0: safe, 2: open relay."

    def add_arguments(self, parser):
        parser.add_argument("target", nargs="?", help="host:port (default: the bundled relayd)")
        parser.add_argument("--domain", default="", help="a local domain of the server (default: the first one)")

    def handle(self, *args, target, domain, **options):
        with audit_context(source="cli", command="relaytest"):
            try:
                run = run_selftest(target or default_target(), domain=domain, any_target=True)
            except SelfTestRefused as exc:
                raise CommandError(str(exc)) from None
        for attempt in (run.report or {}).get("attempts", []):
            mark = "RELAYED" if attempt["accepted"] else "refused"
            self.stdout.write(f"{mark:8} RCPT TO:<{attempt['rcpt_to']}> -> {attempt['code']} {attempt['reply']}")
        self.stdout.write(f"{run.target}: {run.summary}")
        if run.error:
            raise CommandError(f"The self-test could not run: {run.error}")
        if run.open_relay:
            sys.exit(2)
