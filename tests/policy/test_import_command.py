import io

import pytest
from django.core.management import CommandError, call_command

from policy.models import AuditEntry, PolicyRevision, TrustedNetwork

pytestmark = pytest.mark.django_db


def test_import_command_adds_networks_audited_as_the_command(tmp_path, capsys):
    csv_file = tmp_path / "networks.csv"
    csv_file.write_text("network,description\n10.1.0.0/255.255.0.0,Branch\n192.0.2.7,Home\n")
    call_command("import_networks", str(csv_file), "--list", "trusted", "--dry-run")
    assert "Would import: 2 created" in capsys.readouterr().out
    assert not TrustedNetwork.objects.exists()
    call_command("import_networks", str(csv_file), "--list", "trusted")
    assert sorted(TrustedNetwork.objects.values_list("network", flat=True)) == ["10.1.0.0/16", "192.0.2.7/32"]
    entries = AuditEntry.objects.filter(object_type="trusted network")
    assert {(e.actor_name, e.source) for e in entries} == {("system: import_networks", "cli")}
    assert PolicyRevision.objects.count() == 1
    # One run is one change: the audit log groups its entries (and its publish) by one id.
    (run,) = {e.request_id for e in AuditEntry.objects.exclude(object_type="user")}
    assert run


def test_bad_rows_import_nothing(tmp_path, capsys):
    csv_file = tmp_path / "networks.csv"
    csv_file.write_text("network,description\n10.0.0.0/8,ok\n192.168.1.5/24,host bits\n")
    with pytest.raises(CommandError, match="1 bad rows"):
        call_command("import_networks", str(csv_file), "--list", "trusted")
    assert "line 3: network: Host bits are set" in capsys.readouterr().err
    assert not TrustedNetwork.objects.exists()


def test_an_import_that_makes_an_open_relay_needs_confirm_open_relay(tmp_path):
    path = tmp_path / "everyone.csv"
    path.write_text("network,open_relay_override\n0.0.0.0/0,true\n")
    with pytest.raises(CommandError, match=r"open relay.*--confirm-open-relay"):
        call_command("import_networks", str(path), "--list", "trusted")
    assert not TrustedNetwork.objects.exists()
    call_command("import_networks", str(path), "--list", "trusted", "--confirm-open-relay", stdout=io.StringIO())
    assert TrustedNetwork.objects.get().network == "0.0.0.0/0"
