"""The self-test from the dashboard and the CLI: guards, storage, audit. Real SMTP against aiosmtpd sinks."""

import socket

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse

from policy import selftests
from policy.models import AuditEntry, SelfTestRun, TrustedNetwork
from policy.revisions import policy_change
from policy.selftests import SelfTestRefused, run_selftest
from tests.relayd.test_selftest import ClosedSink, OpenSink

pytestmark = pytest.mark.django_db


@pytest.fixture
def serve_allowed(serve_smtp, settings):
    """Return a function that serves a sink and lets the self-test test it (SELFTEST_ALLOWED_TARGETS)."""
    settings.SELFTEST_ALLOWED_TARGETS = []

    def start(handler):
        port = serve_smtp(handler)
        settings.SELFTEST_ALLOWED_TARGETS = [*settings.SELFTEST_ALLOWED_TARGETS, f"127.0.0.1:{port}"]
        return port

    return start


@pytest.fixture
def sink_port(serve_allowed):
    return serve_allowed(ClosedSink())


def test_dashboard_runs_and_shows_the_result(editor_client, editor, sink_port):
    response = editor_client.post(reverse("policy:selftest-start"), {"target": f"127.0.0.1:{sink_port}"})
    run = SelfTestRun.objects.get()
    assert response.url == reverse("policy:selftest", args=[run.pk])
    assert (run.accepted, run.total, run.run_by, run.open_relay) == (0, 20, editor, False)
    body = editor_client.get(reverse("policy:dashboard")).content.decode()
    assert f"127.0.0.1:{sink_port}: not an open relay (0/20 accepted)" in body
    assert "last tested" in body
    entry = AuditEntry.objects.get(object_type="open-relay self-test")
    assert (entry.actor_username, entry.after["accepted"], entry.source) == (editor.username, 0, "web")


def test_open_relay_is_reported(editor_client, serve_allowed):
    port = serve_allowed(OpenSink())
    editor_client.post(reverse("policy:selftest-start"), {"target": f"127.0.0.1:{port}"})
    run = SelfTestRun.objects.get()
    assert run.open_relay
    assert "OPEN RELAY" in editor_client.get(reverse("policy:selftest", args=[run.pk])).content.decode()


def test_viewers_cannot_run_it(viewer_client, sink_port):
    assert viewer_client.post(reverse("policy:selftest-start"), {"target": f"127.0.0.1:{sink_port}"}).status_code == 403
    assert not SelfTestRun.objects.exists()


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("192.0.2.25:25", "192.0.2.25:25 is not a self-test target"),
        ("no-such-host.invalid:25", "no-such-host.invalid:25 is not a self-test target"),
        ("127.0.0.1:22", "127.0.0.1:22 is not a self-test target"),
        ("[::1]:2525", r"\[::1\]:2525 is not a self-test target"),
        ("localhost", "host:port"),
        ("127.0.0.1:0", "no valid port"),
        ("::1:2525", "in brackets"),  # not guessed at: [::1]:2525 or [::1:2525]?
        ("[]:2525", "has no host"),
    ],
)
def test_only_the_configured_targets(settings, target, message):
    settings.RELAYD_SMTP_TARGET = "127.0.0.1:2525"
    with pytest.raises(SelfTestRefused, match=message):
        run_selftest(target)


@pytest.mark.parametrize(
    ("text", "target"),
    [
        ("[2001:DB8::25]:25", ("2001:db8::25", 25)),
        ("[::ffff:127.0.0.1]:2525", ("127.0.0.1", 2525)),  # relayd's reading of an IPv4-mapped address
        ("[::a:b]:25", ("::a:b", 25)),  # relayd's canonical text, never ::10.0.0.11
        (" MX.example.net.:25 ", ("mx.example.net", 25)),
    ],
)
def test_targets_read_as_relayd_writes_them(text, target):
    assert selftests.parse_target(text) == target


def test_configured_targets_are_allowed(settings):
    settings.RELAYD_SMTP_TARGET = "[::1]:2525"
    settings.SELFTEST_ALLOWED_TARGETS = ["192.0.2.25:25", "MX.example.net.:25"]
    for host, port in (("::1", 2525), ("192.0.2.25", 25), ("mx.example.net", 25)):
        selftests._check_target(host, port)  # no traffic leaves loopback in tests: check the guard only
    with pytest.raises(SelfTestRefused):
        selftests._check_target("192.0.2.25", 26)


def test_refusal_does_not_tell_open_ports_from_closed(settings, serve_smtp, monkeypatch):
    """Finding 9: a disallowed target is refused before any lookup or connection, in the same words."""
    settings.SELFTEST_ALLOWED_TARGETS = []
    open_port = serve_smtp(ClosedSink())
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]

    def no_network(*args, **kwargs):
        raise AssertionError("the self-test touched the network for a disallowed target")

    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    answers = []
    for port in (open_port, closed_port):
        with pytest.raises(SelfTestRefused) as refused:
            run_selftest(f"127.0.0.1:{port}")
        answers.append(str(refused.value).replace(str(port), "PORT"))
    assert answers[0] == answers[1]
    assert not SelfTestRun.objects.exists()


def test_rate_limit(editor, sink_port):
    run_selftest(f"127.0.0.1:{sink_port}", user=editor)
    with pytest.raises(SelfTestRefused, match="wait"):
        run_selftest(f"127.0.0.1:{sink_port}", user=editor)


def test_unreachable_server_is_a_stored_error(settings):
    settings.RELAYD_SMTP_TARGET = "127.0.0.1:1"  # an allowed target where nothing listens
    run = run_selftest("127.0.0.1:1")
    assert run.error
    assert "could not run" in run.summary


def test_relaytest_command_exit_codes(serve_smtp, capsys, settings):
    """The CLI is for the host's administrators: it tests any target, unlike the dashboard."""
    settings.SELFTEST_ALLOWED_TARGETS = []
    call_command("relaytest", f"127.0.0.1:{serve_smtp(ClosedSink())}")
    assert "not an open relay (0/20 accepted)" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exited:
        call_command("relaytest", f"127.0.0.1:{serve_smtp(OpenSink())}")
    assert exited.value.code == 2
    with pytest.raises(CommandError, match="could not run"):
        call_command("relaytest", "127.0.0.1:1")
    assert SelfTestRun.objects.filter(run_by_name="system: relaytest").count() == 3


def test_a_relaying_self_test_shows_in_the_risk_panel(editor_client, serve_allowed):
    editor_client.post(reverse("policy:selftest-start"), {"target": f"127.0.0.1:{serve_allowed(OpenSink())}"})
    risks = {risk.code: risk for risk in editor_client.get(reverse("policy:dashboard")).context["risks"]}
    assert risks["selftest_relayed"].level == "danger"


def test_a_result_records_its_revision_and_goes_stale_after_a_policy_change(editor_client, serve_allowed):
    with policy_change():
        TrustedNetwork.objects.create(network="10.0.0.0/8")
    editor_client.post(reverse("policy:selftest-start"), {"target": f"127.0.0.1:{serve_allowed(OpenSink())}"})
    run = SelfTestRun.objects.get()
    assert run.revision_serial == 1
    dashboard = editor_client.get(reverse("policy:dashboard"))
    assert not dashboard.context["selftest_stale"]
    assert "selftest_relayed" in {risk.code for risk in dashboard.context["risks"]}
    assert editor_client.get(reverse("api:selftestrun-detail", args=[run.pk])).json()["stale"] is False

    with policy_change():
        TrustedNetwork.objects.create(network="192.0.2.0/24")
    dashboard = editor_client.get(reverse("policy:dashboard"))
    assert dashboard.context["selftest_stale"]
    assert "The policy changed since this test (it is now revision 2)" in dashboard.content.decode()
    assert 'class="selftest-result stale"' in dashboard.content.decode()
    # An old result is no evidence about the new policy: it no longer counts in the risk analysis.
    assert "selftest_relayed" not in {risk.code for risk in dashboard.context["risks"]}
    body = editor_client.get(reverse("api:selftestrun-detail", args=[run.pk])).json()
    assert (body["revision_serial"], body["stale"], body["outcome"]) == (1, True, "open_relay")


def test_a_failure_to_run_is_shown_as_a_failure_never_green(editor_client, settings):
    settings.RELAYD_SMTP_TARGET = "127.0.0.1:1"  # an allowed target where nothing listens
    run = run_selftest("127.0.0.1:1")
    assert run.outcome == "failed"
    dashboard = editor_client.get(reverse("policy:dashboard")).content.decode()
    assert 'class="selftest-result failed"' in dashboard
    detail = editor_client.get(reverse("policy:selftest", args=[run.pk])).content.decode()
    assert 'class="verdict selftest-result failed"' in detail


def test_dashboard_names_the_allowed_targets(editor_client, settings):
    settings.RELAYD_SMTP_TARGET = "127.0.0.1:2525"
    settings.SELFTEST_ALLOWED_TARGETS = ["[2001:db8::25]:25"]
    page = editor_client.get(reverse("policy:dashboard")).content.decode()
    assert "Only these targets may be tested:\n    127.0.0.1:2525, [2001:db8::25]:25" in page


def test_a_refused_target_is_explained_on_the_dashboard(editor_client, settings):
    settings.RELAYD_SMTP_TARGET = "127.0.0.1:2525"
    response = editor_client.post(reverse("policy:selftest-start"), {"target": "127.0.0.1:22"}, follow=True)
    assert "127.0.0.1:22 is not a self-test target" in response.content.decode()
    assert not SelfTestRun.objects.exists()
