"""manage.py runrelay's defaults for the bundled relayd (the exec itself is exercised by `make run`)."""

import socket

import pytest

from policy.management.commands.runrelay import BUNDLED_RELAYD_TOKEN, Command
from policy.models import ApiToken

pytestmark = pytest.mark.django_db


@pytest.fixture
def command(settings, tmp_path):
    settings.RELAYD_POLICY_PATH = tmp_path / "relayd" / "policy.json"
    settings.RELAYD_XCLIENT_SECRET_FILE = tmp_path / "relayd" / "xclient.secret"
    settings.RELAYADMIN_URL = "http://127.0.0.1:8000"
    return Command()


def test_reports_with_a_node_token_of_the_first_superuser(command, superuser, tmp_path, monkeypatch):
    monkeypatch.delenv("RELAYD_NODE_NAME", raising=False)
    args = command.defaults(["--tls-cert", "c.pem", "--tls-key", "k.pem"])
    options = dict(zip(args[::2], args[1::2], strict=True))
    assert options["--report-url"] == "http://127.0.0.1:8000/api/v1/daemons/"
    assert options["--node-name"] == socket.gethostname()
    token_file = tmp_path / "relayd" / "report.token"
    assert options["--token-file"] == str(token_file)
    assert oct(token_file.stat().st_mode & 0o777) == "0o600"
    token = ApiToken.find(token_file.read_text().strip())
    assert (token.user, token.node, token.name) == (superuser, socket.gethostname(), BUNDLED_RELAYD_TOKEN)
    command.defaults(["--tls-cert", "c.pem", "--tls-key", "k.pem"])
    assert ApiToken.objects.count() == 1  # reused, not multiplied


def test_the_node_token_follows_the_node_name(command, superuser, tmp_path):
    args = command.defaults(["--tls-cert", "c", "--tls-key", "k", "--node-name", "mx1"])
    assert "--node-name" not in args[args.index("--token-file") :]  # given, so not added again
    first = ApiToken.find((tmp_path / "relayd" / "report.token").read_text().strip())
    assert first.node == "mx1"
    command.defaults(["--tls-cert", "c", "--tls-key", "k", "--node-name=mx2"])
    second = ApiToken.find((tmp_path / "relayd" / "report.token").read_text().strip())
    assert second.node == "mx2"
    assert list(ApiToken.objects.values_list("node", flat=True)) == ["mx2"]  # the old one is gone


def test_an_old_read_only_report_token_is_replaced(command, superuser, tmp_path):
    """Before issue 11, runrelay wrote a person's read-only token, which may no longer report."""
    token_file = tmp_path / "relayd" / "report.token"
    token_file.parent.mkdir(parents=True)
    old = ApiToken(user=superuser, name=BUNDLED_RELAYD_TOKEN, read_only=True)
    token_file.write_text(old.generate_key() + "\n")
    old.save()
    command.defaults(["--tls-cert", "c", "--tls-key", "k", "--node-name", "mx1"])
    assert ApiToken.find(token_file.read_text().strip()).node == "mx1"


def test_no_superuser_means_no_reporting(command):
    args = command.defaults(["--tls-cert", "c.pem", "--tls-key", "k.pem"])
    assert "--report-url" not in args


def test_xclient_is_enabled_for_this_host_with_a_private_secret(command, tmp_path):
    args = command.defaults(["--tls-cert", "c", "--tls-key", "k", "--listen", "192.0.2.5:25", "--listen", "[::]:25"])
    options = dict(zip(args[::2], args[1::2], strict=True))
    assert options["--xclient-hosts"] == "127.0.0.0/8,::1,192.0.2.5"
    secret = tmp_path / "relayd" / "xclient.secret"
    assert options["--xclient-secret-file"] == str(secret)
    assert oct(secret.stat().st_mode & 0o777) == "0o600" and len(secret.read_text().strip()) >= 32
    first = secret.read_text()
    command.defaults([])
    assert secret.read_text() == first  # made once, then kept
    assert "--xclient-hosts" not in command.defaults(["--xclient-hosts", "10.0.0.1"])


def test_given_options_win(command, superuser):
    args = command.defaults(["--policy-url", "https://x/api/v1/export/relayd/", "--tls-cert", "c", "--tls-key", "k"])
    assert "--report-url" not in args
    assert "--token-file" not in args
    assert args[args.index("--policy") + 1].endswith("relayd/policy.json")
