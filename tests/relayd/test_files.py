"""write_atomically: the one durable file replacement of relayd and the dashboard."""

import os

import pytest

from relayd.files import write_atomically


@pytest.mark.parametrize("mode", [0o600, 0o640])
def test_the_new_content_replaces_the_old_with_the_mode_asked_for(tmp_path, mode):
    path = tmp_path / "policy.json"
    path.write_bytes(b"old")
    os.chmod(path, 0o644)
    write_atomically(path, b"new", mode=mode)
    assert path.read_bytes() == b"new"
    assert path.stat().st_mode & 0o777 == mode
    assert os.listdir(tmp_path) == ["policy.json"]


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "policy.json"
    path.write_bytes(b"old")
    with pytest.raises(TypeError):
        write_atomically(path, "text, not bytes", mode=0o600)
    assert path.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["policy.json"]
