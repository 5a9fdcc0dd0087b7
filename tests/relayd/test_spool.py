"""The spool of docs/spool.md: group-committed writes, the reader API for the queue runner, crash leftovers."""

import asyncio
import errno
import json
import os

import pytest

from relayd.spool import Spool, envelope_line, new_id

ENVELOPE = {"mail_from": "a@client.test", "rcpts": [{"address": "bob@example.com", "route": None}]}


def test_ids_sort_by_time_and_are_unique():
    ids = [new_id() for _ in range(1000)]
    assert len(set(ids)) == 1000 and all(len(i) == 24 for i in ids)
    assert sorted(ids, key=lambda i: i[:16]) == ids


def test_batch_is_fsynced_file_by_file_then_once_for_the_directory(tmp_path, monkeypatch):
    spool = Spool(tmp_path)
    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: synced.append(os.readlink(f"/proc/self/fd/{fd}")) or real_fsync(fd))
    batch = []
    for body in (b"one\r\n", b"two\r\n", b"three\r\n"):
        message_id, header = envelope_line(ENVELOPE, body)
        batch.append((message_id, header, body))
    assert spool.write_batch(batch) == [None, None, None]
    files = [name for name in synced if name.endswith(".msg")]
    assert len(files) == 3 and all(name.startswith(f"{spool.tmp}/") for name in files)  # fsynced before the rename
    assert synced[-1] == str(tmp_path / "queue")  # one directory fsync, after the renames
    assert spool.queued() == sorted(message_id for message_id, _, _ in batch)
    envelope, message = spool.read(batch[1][0])
    assert message == b"two\r\n" and envelope["size"] == 5 and envelope["format"] == 1
    assert envelope["client"] is None and envelope["received_at"]
    spool.close()


def test_failed_fsync_reports_the_error_and_leaves_nothing(tmp_path, monkeypatch):
    spool = Spool(tmp_path)

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    message_id, header = envelope_line(ENVELOPE, b"x\r\n")
    [error] = spool.write_batch([(message_id, header, b"x\r\n")])
    assert error.errno == errno.ENOSPC
    assert spool.queued() == [] and list(spool.tmp.iterdir()) == []
    with pytest.raises(OSError):
        asyncio.run(spool.store(ENVELOPE, b"x\r\n"))
    spool.close()


def test_reader_refuses_a_file_cut_short(tmp_path):
    spool = Spool(tmp_path)
    message_id = asyncio.run(spool.store(ENVELOPE, b"0123456789"))
    path = spool.queue / f"{message_id}.msg"
    path.write_bytes(path.read_bytes()[:-3])
    with pytest.raises(ValueError, match="cut short"):
        spool.read(message_id)
    with pytest.raises(ValueError, match="not a spool id"):
        spool.read("../../etc/passwd")
    spool.quarantine(message_id, "cut short")
    assert spool.queued() == []
    assert (spool.corrupt / f"{message_id}.reason").read_text() == "cut short\n"
    spool.close()


def test_state_is_replaced_atomically_and_removed_before_the_message(tmp_path):
    spool = Spool(tmp_path)
    message_id = asyncio.run(spool.store(ENVELOPE, b"x\r\n"))
    assert spool.read_state(message_id) is None
    spool.write_state(message_id, {"attempts": 1, "done": []})
    spool.write_state(message_id, {"attempts": 2, "done": ["bob@example.com"]})
    assert spool.read_state(message_id) == {"attempts": 2, "done": ["bob@example.com"]}
    assert list(spool.tmp.iterdir()) == []
    spool.remove(message_id)
    assert spool.queued() == [] and list(spool.queue.iterdir()) == []
    spool.close()


def test_leftovers_of_a_crash_are_removed_at_start(tmp_path):
    spool = Spool(tmp_path)
    (spool.tmp / f"{new_id()}.msg").write_bytes(b'{"format": 1')
    assert spool.remove_leftovers() == 1 and list(spool.tmp.iterdir()) == []
    spool.close()


def test_store_fills_in_the_envelope(tmp_path):
    spool = Spool(tmp_path)
    message_id = asyncio.run(spool.store({**ENVELOPE, "client": "192.0.2.1", "policy_serial": 4}, b"abc"))
    header = json.loads((spool.queue / f"{message_id}.msg").read_bytes().partition(b"\n")[0])
    assert list(header) == [
        "format", "id", "received_at", "client", "helo", "auth_user", "mail_from", "rcpts", "size", "policy_serial"
    ]  # fmt: skip
    assert header["client"] == "192.0.2.1" and header["policy_serial"] == 4 and header["size"] == 3
    with pytest.raises(ValueError):
        envelope_line({"rcpts": []}, b"")
    spool.close()
