"""Create the first administrator account, once, and print its password that one time."""

import secrets

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Create a superuser with a random password if no superuser exists yet; print the password once."

    def add_arguments(self, parser):
        parser.add_argument("--username", default="admin")

    def handle(self, *args, username, **options):
        User = get_user_model()
        if User.objects.filter(is_superuser=True).exists():
            self.stdout.write("An administrator account already exists; its password is not shown again.")
            return
        password = secrets.token_urlsafe(12)
        User.objects.create_superuser(username=username, email="", password=password)
        # Written to the terminal only, never to a log file: this is the one time it is shown.
        lines = [
            "Created the administrator account",
            f"  username: {username}",
            f"  password: {password}",
            "Write the password down: it is not shown again.",
            f"Forgot it? .venv/bin/python manage.py changepassword {username}",
        ]
        width = max(len(line) for line in lines) + 2
        framed = ["╔" + "═" * width + "╗", *(f"║ {line.ljust(width - 1)}║" for line in lines), "╚" + "═" * width + "╝"]
        self.stdout.write(self.style.SUCCESS("\n".join(["", *framed, ""])))
