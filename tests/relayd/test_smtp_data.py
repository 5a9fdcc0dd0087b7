"""DATA over real SMTP: smuggling refused, Received header, durability before 250, spool failures answered 451."""

import errno
import json
import os
import signal
import time

import pytest

from relayd.spool import Spool
from tests.relayd.conftest import policy, send

SMUGGLED = b"MAIL FROM:<a@client.test>\r\nRCPT TO:<victim@example.com>\r\nDATA\r\nSubject: smuggled\r\n\r\nevil\r\n"


@pytest.mark.parametrize(
    "end_of_data",
    [b"\n.\n", b"\r.\r", b"\n.\r\n", b"\r\n.\n", b"\r\n.\r", b"\r.\r\n", b"\n.\r", b"\r\n.\r\r\n", b"\n\n.\n\n"],
)
def test_smuggled_end_of_data_is_refused(start_relay, end_of_data):
    relay = start_relay(policy())
    with relay.smtp() as client:
        client.docmd("MAIL FROM:<a@client.test>")
        client.docmd("RCPT TO:<bob@example.com>")
        assert client.docmd("DATA")[0] == 354
        client.send(b"Subject: hello\r\n\r\nlegit" + end_of_data + SMUGGLED + b".\r\n")
        assert client.getreply() == (550, b"5.6.11 Message contains bare CR or LF, which cannot be sent via DATA")
        # The smuggled commands were data, never commands: the session is simply ready for the next one.
        assert client.noop()[0] == 250
    assert relay.queued() == []


def test_accepted_message_is_on_disk_with_a_received_header_before_the_250(start_relay):
    relay = start_relay(policy())
    with relay.smtp() as client:
        _, (code, text) = send(client, "a@client.test", "<bob@example.com>", b"Subject: hi\r\n\r\n.dot\r\nend\r\n")
        assert code == 250  # smtplib sent the line as "..dot"
        [path] = relay.queued()  # no waiting: the file was complete when 250 came
    message_id = text.decode().rpartition(" ")[2]
    header, message = path.read_bytes().split(b"\n", 1)
    envelope = json.loads(header)
    assert path.name == f"{message_id}.msg" and envelope["id"] == message_id and envelope["size"] == len(message)
    assert message.startswith(
        b"Received: from client.test ([127.0.0.1])\r\n\tby relay.test (relayd) with ESMTP id "
        + message_id.encode()
        + b"\r\n\tfor <bob@example.com>;\r\n\t"
    )
    assert message.endswith(b"\r\nSubject: hi\r\n\r\n.dot\r\nend\r\n")


def test_null_sender_is_stored_as_empty(start_relay):
    relay = start_relay(policy())
    with relay.smtp() as client:
        client.docmd("MAIL FROM:<>")
        client.docmd("RCPT TO:<bob@example.com>")
        assert client.data(b"Subject: bounce\r\n\r\nx\r\n")[0] == 250
    assert json.loads(relay.queued()[0].read_bytes().partition(b"\n")[0])["mail_from"] == ""


def test_full_disk_answers_451_and_stores_nothing(start_relay, monkeypatch):
    relay = start_relay(policy())
    # Store in this process, where os.fsync can be made to fail like a full disk.
    relay.daemon.relay.spool = Spool(relay.spool)

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with relay.smtp() as client:
        _, data = send(client, "a@client.test", "<bob@example.com>")
        assert data == (451, b"4.3.0 Local problem storing the message, try again later")
        assert client.noop()[0] == 250
    assert relay.queued() == [] and list((relay.spool / "tmp").iterdir()) == []
    assert relay.daemon.metrics.value("spool_errors") == 1


def test_unwritable_spool_answers_451_then_recovers(start_relay):
    relay = start_relay(policy())
    tmp = relay.spool / "tmp"
    tmp.rmdir()
    tmp.write_text("not a directory")  # root ignores permissions, not ENOTDIR
    with relay.smtp() as client:
        assert send(client, "a@client.test", "<bob@example.com>")[1][0] == 451
        tmp.unlink()
        tmp.mkdir()
        assert send(client, "a@client.test", "<bob@example.com>")[1][0] == 250


def test_spool_writer_that_dies_is_restarted(start_relay):
    relay = start_relay(policy())
    with relay.smtp() as client:
        assert send(client, "a@client.test", "<bob@example.com>")[1][0] == 250
        os.kill(relay.daemon.writer._process.pid, signal.SIGKILL)
        deadline = time.monotonic() + 5
        while relay.daemon.writer._process is not None:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        assert send(client, "a@client.test", "<bob@example.com>")[1][0] == 250
    assert len(relay.queued()) == 2


@pytest.mark.parametrize(
    "body",
    [
        b"Subject: hello\r\n\r\nlegit\r\n\x00.\r\n" + SMUGGLED,  # a next hop that drops NUL sees "\r\n.\r\n"
        b"Subject: hello\r\n\r\nlegit\r\n.\x00\r\n" + SMUGGLED,
        b"Subject: hello\r\n\r\nnul \x00 in the middle\r\n",
    ],
)
def test_nul_in_data_is_refused(start_relay, body):
    relay = start_relay(policy())
    with relay.smtp() as client:
        client.docmd("MAIL FROM:<a@client.test>")
        client.docmd("RCPT TO:<bob@example.com>")
        assert client.docmd("DATA")[0] == 354
        client.send(body + b".\r\n")
        assert client.getreply() == (554, b"5.6.0 Message contains NUL characters, which cannot be sent via DATA")
        assert client.noop()[0] == 250
    assert relay.queued() == []


def test_dead_spool_writer_is_451_without_a_traceback(start_relay, caplog):
    relay = start_relay(policy())
    with relay.smtp() as client:
        assert send(client, "a@client.test", "<bob@example.com>")[1][0] == 250
        # The writer's pipe closed under intake, before intake noticed the writer was gone.
        relay.run(_close_pipe(relay.daemon.writer._process))
        assert send(client, "a@client.test", "<bob@example.com>")[1] == (
            451,
            b"4.3.0 Local problem storing the message, try again later",
        )
        assert client.noop()[0] == 250
    assert not [record for record in caplog.records if record.exc_info]


async def _close_pipe(process) -> None:
    process.stdin.close()
