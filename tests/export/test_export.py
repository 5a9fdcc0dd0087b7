"""The export API shared by all targets: the registry, headers and their checksum, expiry and bundles."""

import io
import re
import tarfile
from datetime import datetime, timedelta

import pytest

from policy.export import TARGETS, bundle, render, verify
from relayd.config import SnapshotError
from tests.export import LAB_EXPIRES, NOW, make_snapshot, network


@pytest.mark.parametrize("target", TARGETS)
def test_every_file_verifies_until_it_is_edited(target):
    for text in render(target, make_snapshot(), NOW).values():
        assert verify(text)
        body_edit = text[:-1] + " \n"  # a stray space at the end
        header_edit = text.replace("Policy serial 7,", "Policy serial 8,")
        assert not verify(body_edit)
        assert not verify(header_edit)
        assert not verify(text + "# one more line\n")
        assert not verify(text.replace("\n", "\r\n"))
        assert not verify(re.sub(r"^# relayadmin-sha256: .*\n", "", text, flags=re.MULTILINE))


def test_a_file_that_relayadmin_did_not_write_does_not_verify():
    assert not verify("")
    assert not verify("mynetworks = 127.0.0.0/8\n")
    assert not verify("# relayadmin-sha256: " + "0" * 64 + "\n")


def test_unknown_targets_and_invalid_snapshots_are_refused():
    with pytest.raises(ValueError, match="unknown export target 'sendmail': choose one of postfix, exim"):
        render("sendmail", make_snapshot(), NOW)
    with pytest.raises(SnapshotError, match="unknown key"):
        render("postfix", {**make_snapshot(), "extra": 1}, NOW)
    with pytest.raises(ValueError, match="UTC offset"):
        render("postfix", make_snapshot(), datetime(2026, 11, 28, 12, 0))


@pytest.mark.parametrize("target", TARGETS)
def test_a_trusted_network_is_left_out_from_the_moment_it_expires(target):
    just_before = render(target, make_snapshot(), LAB_EXPIRES - timedelta(seconds=1))
    at_expiry = render(target, make_snapshot(), LAB_EXPIRES)
    assert any("2001:db8::/32" in text for text in just_before.values())
    assert not any("2001:db8::/32" in text for text in at_expiry.values())
    assert not any("Export again before" in text for text in at_expiry.values())


@pytest.mark.parametrize("target", TARGETS)
def test_descriptions_cannot_inject_configuration(target):
    sneaky = "LAN\nmynetworks = 0.0.0.0/0\r\nhostlist relay_from_hosts = 0.0.0.0/0 \\"
    snapshot = make_snapshot(trusted_networks=[network(3, "10.0.0.0/8", sneaky)])
    for text in render(target, snapshot, NOW).values():
        for line in text.splitlines():
            assert "0.0.0.0/0" not in line or line.startswith("#")
            assert not (line.startswith("#") and line.endswith("\\"))


@pytest.mark.parametrize("target", TARGETS)
def test_bundle_unpacks_the_files_into_relayadmin(target):
    name, data = bundle(target, make_snapshot(), NOW)
    assert name == f"relayadmin-{target}-serial7.tar.gz"
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
        members = archive.getmembers()
        contents = {member.name: archive.extractfile(member).read().decode() for member in members}
    assert contents == {f"relayadmin/{file}": text for file, text in render(target, make_snapshot(), NOW).items()}
    assert {(member.mode, member.uid, member.isfile()) for member in members} == {(0o644, 0, True)}
    # The same export of the same revision is the same archive, byte for byte.
    assert bundle(target, make_snapshot(), NOW) == (name, data)
