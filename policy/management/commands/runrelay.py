"""Run relayd against the dashboard's current policy: publish it, then start `python -m relayd`."""

import ipaddress
import os
import secrets
import shutil
import socket
import subprocess
import sys

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from policy import services
from policy.audit import audit_context
from policy.models import ApiToken
from policy.revisions import commit_revision, publish_latest

BUNDLED_RELAYD_TOKEN = "bundled relayd (status reports)"  # noqa: S105 (the token's name, not a secret)


class Command(BaseCommand):
    help = (
        "Publish the current policy and run relayd on it. Any relayd option may follow "
        "(python -m relayd --help); --policy, --spool and a self-signed STARTTLS pair under var/ are defaults."
    )

    relayd_args: list[str] = []

    def run_from_argv(self, argv):
        # Every argument after the command name is relayd's: Django's parser would refuse them.
        self.relayd_args = argv[2:]
        super().run_from_argv(argv[:2])

    def handle(self, *args, **options):
        relayd_args = self.relayd_args
        with audit_context(source="cli", command="runrelay"):
            commit_revision()
        revision = publish_latest()
        argv = [sys.executable, "-m", "relayd", *self.defaults(relayd_args), *relayd_args]
        self.stdout.write(f"relayd enforces revision {revision.serial} from {settings.RELAYD_POLICY_PATH}")
        self.stdout.flush()
        os.execv(sys.executable, argv)  # noqa: S606 (relayd replaces this process, so signals reach it directly)

    def defaults(self, given: list[str]) -> list[str]:
        relayd_dir = settings.RELAYD_POLICY_PATH.parent
        defaults = {"--policy": str(settings.RELAYD_POLICY_PATH), "--spool": str(settings.VAR_DIR / "spool")}
        if "--tls-cert" not in given:
            cert, key = self.self_signed_pair(relayd_dir / "tls")
            defaults.update({"--tls-cert": str(cert), "--tls-key": str(key)})
        if "--xclient-hosts" not in given and "--xclient-secret-file" not in given:
            defaults.update(
                {
                    "--xclient-hosts": ",".join(self.own_hosts(given)),
                    "--xclient-secret-file": str(self.xclient_secret(settings.RELAYD_XCLIENT_SECRET_FILE)),
                }
            )
        if "--report-url" not in given and "--token-file" not in given and "--policy-url" not in given:
            node = node_name(given)
            token_file = self.report_token(relayd_dir / "report.token", node)
            if token_file:
                defaults.update(
                    {
                        "--report-url": f"{settings.RELAYADMIN_URL}/api/v1/daemons/",
                        "--token-file": str(token_file),
                        # The token may report for this name only: relayd must send the same one.
                        "--node-name": node,
                    }
                )
        return [part for option, value in defaults.items() if option not in given for part in (option, value)]

    @staticmethod
    def own_hosts(given: list[str]) -> list[str]:
        """Return the addresses the dashboard's self-test connects from: loopback, and each specific --listen address.

        XCLIENT is enabled for them only (docs/relayd.md): the dashboard runs on this host.
        """
        hosts = ["127.0.0.0/8", "::1"]
        for index, arg in enumerate(given[:-1]):
            if arg == "--listen":
                host = given[index + 1].rpartition(":")[0].strip("[]")
                try:
                    address = ipaddress.ip_address(host)
                except ValueError:
                    continue  # relayd itself will refuse it, with a better message
                if not address.is_unspecified and not address.is_loopback:
                    hosts.append(str(address))
        return hosts

    def xclient_secret(self, secret_file):
        """Return the file of the secret the self-test's XCLIENT carries, made once (mode 0600)."""
        if secret_file.exists() and len(secret_file.read_text().strip()) >= 16:
            return secret_file
        secret_file.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(secret_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_urlsafe(32) + "\n")
        return secret_file

    def report_token(self, token_file, node: str):
        """Return a file holding a node token for the bundled relayd's status reports, made once per node name.

        The token belongs to the first superuser; without one, relayd runs without reporting.
        """
        if token_file.exists():
            token = ApiToken.find(token_file.read_text().strip())
            if token is not None and token.node == node and not token.is_expired:
                return token_file
        owner = get_user_model().objects.filter(is_superuser=True, is_active=True).order_by("pk").first()
        if owner is None:
            return None
        try:
            with audit_context(source="cli", command="runrelay"):
                ApiToken.objects.filter(user=owner, name=BUNDLED_RELAYD_TOKEN).delete()
                _, key = services.issue_api_token(owner, BUNDLED_RELAYD_TOKEN, node=node)
        except ValidationError as exc:
            raise CommandError(f"Cannot make a node token for “{node}”: {' '.join(exc.messages)}") from None
        token_file.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(token_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(key + "\n")
        return token_file

    def self_signed_pair(self, directory):
        """Return a self-signed certificate and key for STARTTLS on loopback, made once with openssl."""
        cert, key = directory / "cert.pem", directory / "key.pem"
        if cert.exists() and key.exists():
            return cert, key
        openssl = shutil.which("openssl")
        if openssl is None:
            raise CommandError("openssl is needed to make a STARTTLS certificate; or pass --tls-cert and --tls-key.")
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)  # no window in which others may read the key
        subprocess.run(  # noqa: S603 (fixed arguments, no shell)
            [
                openssl,
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "825",
                "-subj",
                "/CN=localhost",
                "-addext",
                "subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1",
                "-keyout",
                str(key),
                "-out",
                str(cert),
            ],
            check=True,
            capture_output=True,
        )
        os.chmod(key, 0o600)
        self.stdout.write(f"Made a self-signed STARTTLS certificate in {directory}")
        return cert, key


def node_name(relayd_args: list[str]) -> str:
    """Return the node name relayd will report: --node-name if given, else RELAYD_NODE_NAME or this host's name."""
    for index, arg in enumerate(relayd_args):
        if arg == "--node-name" and index + 1 < len(relayd_args):
            return relayd_args[index + 1]
        if arg.startswith("--node-name="):
            return arg.partition("=")[2]
    return os.environ.get("RELAYD_NODE_NAME", "").strip() or socket.gethostname()
