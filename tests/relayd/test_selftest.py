"""The open-relay battery over real SMTP: an open aiosmtpd sink must be caught, and DATA never sent."""

import pytest

from relayd import selftest


class OpenSink:
    """Accepts every recipient: the open relay of the tech tip's "good old days"."""

    def __init__(self):
        self.data_commands = 0

    async def handle_DATA(self, server, session, envelope):
        self.data_commands += 1
        return "250 OK"


class NaiveSink(OpenSink):
    """Accepts whatever ends in its own domain: fooled by the percent hack, bang paths and quoting."""

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.lower().endswith("@example.com"):
            envelope.rcpt_tos.append(address)
            return "250 OK"
        return "550 5.7.1 Relaying denied"


class ClosedSink(OpenSink):
    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        return "550 5.7.1 Relaying denied"


def test_open_sink_is_an_open_relay_and_gets_no_data(serve_smtp):
    sink = OpenSink()
    report = selftest.run("127.0.0.1", serve_smtp(sink), domain="example.com")
    assert len(report.attempts) == 20
    # aiosmtpd itself refuses a few forms as malformed (553); everything else is relayed.
    assert report.accepted == sum(attempt.code != 553 for attempt in report.attempts) >= 16
    assert report.is_open_relay
    assert sink.data_commands == 0


def test_naive_domain_check_is_caught_by_the_tricks(serve_smtp):
    report = selftest.run("127.0.0.1", serve_smtp(NaiveSink()), domain="example.com")
    relayed = {attempt.rcpt_to for attempt in report.attempts if attempt.accepted}
    assert "relaytest%relaytest.example.invalid@example.com" in relayed
    assert "relaytest.example.invalid!relaytest@example.com" in relayed
    assert report.is_open_relay


def test_closed_server_refuses_everything(serve_smtp):
    report = selftest.run("127.0.0.1", serve_smtp(ClosedSink()), domain="example.com")
    assert (report.accepted, report.is_open_relay) == (0, False)
    assert report.as_dict()["total"] == 20


def test_battery_has_the_nmap_forms():
    forms = selftest.battery("example.com", "192.0.2.1")
    assert forms[:3] == [
        ("", "relaytest@relaytest.example.invalid"),
        ("antispam", "relaytest@relaytest.example.invalid"),
        ("antispam@example.com", "relaytest@relaytest.example.invalid"),
    ]
    rcpts = {rcpt for _, rcpt in forms}
    for trick in (
        "relaytest%relaytest.example.invalid@example.com",
        '"relaytest@relaytest.example.invalid"@[192.0.2.1]',
        "relaytest@relaytest.example.invalid@example.com",
        "@example.com:relaytest@relaytest.example.invalid",
        "relaytest.example.invalid!relaytest@example.com",
    ):
        assert trick in rcpts


@pytest.mark.parametrize(("handler", "code"), [(OpenSink, 2), (ClosedSink, 0)])
def test_command_line_exit_codes(serve_smtp, capsys, handler, code):
    port = serve_smtp(handler())
    assert selftest.main([f"127.0.0.1:{port}", "--domain", "example.com"]) == code


def test_unreachable_target_exits_1(capsys):
    assert selftest.main(["127.0.0.1:1"]) == 1
    assert "cannot test" in capsys.readouterr().err
