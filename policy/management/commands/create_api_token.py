"""Create an API token for a user and print its key, this one time."""

import argparse

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from policy import services
from policy.audit import audit_context


def positive_days(text: str) -> int:
    if not (text.isascii() and text.isdigit()) or int(text) < 1:
        raise argparse.ArgumentTypeError(f"“{text}” is not a number of days: use a whole number, 1 or more.")
    return int(text)


class Command(BaseCommand):
    help = "Create an API token for USERNAME and print the key once; only its hash is stored."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--read-only", action="store_true", help="the token can only read, never write")
        parser.add_argument("--expires", type=positive_days, metavar="DAYS", help="expire after this many days")
        parser.add_argument("--name", help="what uses the token (default: “created with manage.py” and the time)")
        parser.add_argument(
            "--node",
            metavar="NAME",
            default="",
            help="make a node token for the relayd node NAME (relayd's --node-name): it may only read "
            "relayd's export and report this node's status; USERNAME must be an editor",
        )

    def handle(self, *args, username, read_only, expires, name, node, **options):
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"No user “{username}”. Create the user first, or check the spelling.")
        name = name or f"created with manage.py {timezone.now():%Y-%m-%d %H:%M:%S}"
        try:
            with audit_context(source="cli", command="create_api_token"):
                token, key = services.issue_api_token(
                    user, name, read_only=read_only, expires_in_days=expires, node=node
                )
        except ValidationError as exc:
            raise CommandError(" ".join(exc.messages)) from None
        expiry = f"expires {token.expires_at:%Y-%m-%d %H:%M} UTC" if token.expires_at else "never expires"
        access = f"node token for “{token.node}”" if token.is_node else "read-only" if token.read_only else "read-write"
        self.stdout.write(f"Token “{token.name}” for {username}: {access}, {expiry}.")
        self.stdout.write("Key (shown only now; store it in your secret store):")
        self.stdout.write(key)
