"""API of revisions, exports (ETag/304), relayd node reports, the tester and the self-test."""

import io
import json
import tarfile

import pytest

from policy.models import AuditEntry, LocalDomain, PolicyRevision, RelayNode, TrustedNetwork
from policy.revisions import policy_change
from tests.api.conftest import issue_token, session_client, token_client
from tests.relayd.test_selftest import ClosedSink

pytestmark = pytest.mark.django_db


@pytest.fixture
def two_revisions():
    with policy_change():
        TrustedNetwork.objects.create(network="10.0.0.0/8")
    with policy_change():
        LocalDomain.objects.create(domain="example.com")


def test_relayd_export_sends_etag_and_answers_304(ro_key, two_revisions):
    node = token_client(ro_key)
    response = node.get("/api/v1/export/relayd/")
    assert response.status_code == 200
    etag = response["ETag"]
    assert etag == f'"{PolicyRevision.objects.get(serial=2).sha256}"'
    assert json.loads(response.content)["serial"] == 2
    assert node.get("/api/v1/export/relayd/", HTTP_IF_NONE_MATCH=etag).status_code == 304
    assert AuditEntry.objects.filter(action="export").count() == 1  # the 304 is not a download
    with policy_change():
        LocalDomain.objects.create(domain="example.org")
    assert node.get("/api/v1/export/relayd/", HTTP_IF_NONE_MATCH=etag).status_code == 200


def test_a_node_fetching_its_snapshot_is_noted_on_its_row_not_in_the_audit_log(node_key, ro_key, two_revisions):
    node = token_client(node_key)
    assert node.post("/api/v1/daemons/", {"node": "mx1", "serial": 1}, format="json").status_code == 201
    assert node.get("/api/v1/export/relayd/").status_code == 200
    assert not AuditEntry.objects.filter(action="export").exists()
    mx1 = RelayNode.objects.get(name="mx1")
    assert (mx1.fetched_serial, mx1.fetched_from) == (2, "127.0.0.1")
    assert node.get("/api/v1/daemons/").status_code == 403  # node tokens do not read the list; people do
    # A person reading the same snapshot, password hashes and all, is still audited.
    assert token_client(ro_key).get("/api/v1/export/relayd/").status_code == 200
    assert AuditEntry.objects.get(action="export").object_repr == "relayd export of revision 2"


def test_a_node_token_fetching_from_elsewhere_is_audited(node_key, two_revisions):
    node = token_client(node_key)
    # Before its first report the node has no address on record: the fetch is audited.
    assert node.get("/api/v1/export/relayd/").status_code == 200
    assert AuditEntry.objects.filter(action="export").count() == 1
    assert node.post("/api/v1/daemons/", {"node": "mx1", "serial": 2}, format="json").status_code == 201
    assert node.get("/api/v1/export/relayd/").status_code == 200
    assert AuditEntry.objects.filter(action="export").count() == 1  # from where it reports: a note only
    # The same token used from another address, as a copied token would be.
    assert node.get("/api/v1/export/relayd/", REMOTE_ADDR="203.0.113.66").status_code == 200
    entry = AuditEntry.objects.filter(action="export").order_by("-id").first()
    assert (entry.remote_addr, entry.object_repr) == ("203.0.113.66", "relayd export of revision 2")
    assert RelayNode.objects.get(name="mx1").fetched_from == "203.0.113.66"


def test_relayd_export_is_for_tokens_and_editors_not_viewer_sessions(viewer, editor, two_revisions):
    assert session_client(viewer).get("/api/v1/export/relayd/").status_code == 403
    assert session_client(editor).get("/api/v1/export/relayd/").status_code == 200


def test_postfix_export_for_readers(viewer, two_revisions):
    response = session_client(viewer).get("/api/v1/export/postfix/")
    with tarfile.open(fileobj=io.BytesIO(response.content)) as archive:
        assert "relayadmin/mynetworks.cidr" in archive.getnames()
    assert session_client(viewer).get("/api/v1/export/sendmail/").status_code == 404


def test_revisions_list_detail_and_rollback(api, viewer, two_revisions):
    assert [r["serial"] for r in api.get("/api/v1/revisions/").json()["results"]] == [2, 1]
    assert "snapshot" in api.get("/api/v1/revisions/1/").json()
    assert session_client(viewer).get("/api/v1/revisions/1/").status_code == 403  # hashes inside
    response = api.post("/api/v1/revisions/1/rollback/", {"reason": "undo"}, format="json")
    assert (response.status_code, response.json()["serial"], response.json()["rolled_back_to"]) == (201, 3, 1)
    assert not LocalDomain.objects.exists()
    assert AuditEntry.objects.get(action="rollback").reason == "undo"


def test_viewer_cannot_roll_back(viewer, two_revisions):
    assert session_client(viewer).post("/api/v1/revisions/1/rollback/").status_code == 403


def test_node_report_with_a_node_token(node_key, ro_key, viewer, two_revisions):
    node = token_client(node_key)
    report = {"node": "mx1", "serial": 2, "tls": True, "counters": {"accepted": 4, "relay_denied": 1}}
    response = node.post("/api/v1/daemons/", report, format="json")
    assert (response.status_code, response.json()["state"]) == (201, "current")
    assert RelayNode.objects.get().counters["accepted"] == 4
    assert node.post("/api/v1/daemons/", {"node": ""}, format="json").status_code == 400
    assert session_client(viewer).post("/api/v1/daemons/", report, format="json").status_code == 403
    assert [n["name"] for n in session_client(viewer).get("/api/v1/daemons/").json()["results"]] == ["mx1"]


def test_only_node_tokens_report_and_each_for_its_own_node(node_key, ro_key, rw_key, editor, two_revisions):
    """Finding 2: a person's token (read-only, read-write, an editor's session) cannot forge node status."""
    forged = {"node": "mx1", "serial": 0, "tls": False}
    for client in (token_client(ro_key), token_client(rw_key), session_client(editor)):
        response = client.post("/api/v1/daemons/", forged, format="json")
        assert response.status_code == 403
        assert "Only node tokens may report" in response.json()["detail"]
    response = token_client(node_key).post("/api/v1/daemons/", {**forged, "node": "mx2"}, format="json")
    assert response.status_code == 403
    assert response.json()["detail"] == "This token reports for node “mx1” only."
    assert not RelayNode.objects.exists()


def test_a_node_token_of_a_demoted_user_stops_working(node_key, editor, two_revisions):
    editor.groups.clear()
    client = token_client(node_key)
    assert client.post("/api/v1/daemons/", {"node": "mx1"}, format="json").status_code == 403
    response = client.get("/api/v1/export/relayd/")
    assert (response.status_code, "no longer an editor" in response.json()["detail"]) == (403, True)


def test_node_count_is_capped(editor, settings, two_revisions):
    settings.RELAYADMIN_MAX_NODES = 2
    clients = {name: token_client(issue_token(editor, name=name, node=name)) for name in ("a", "b", "c")}
    for name in ("a", "b"):
        assert clients[name].post("/api/v1/daemons/", {"node": name}, format="json").status_code == 201
    response = clients["c"].post("/api/v1/daemons/", {"node": "c"}, format="json")
    assert response.status_code == 409
    assert "RELAYADMIN_MAX_NODES" in response.json()["detail"]
    assert clients["a"].post("/api/v1/daemons/", {"node": "a"}, format="json").status_code == 201  # known: fine
    assert sorted(RelayNode.objects.values_list("name", flat=True)) == ["a", "b"]


def test_reports_are_rate_limited_per_node_token(editor, settings, two_revisions):
    settings.RELAYADMIN_NODE_REPORT_RATE = "3/min"
    first, second = (token_client(issue_token(editor, name=name, node=name)) for name in ("a", "b"))
    codes = [first.post("/api/v1/daemons/", {"node": "a"}, format="json").status_code for _ in range(4)]
    assert codes == [201, 201, 201, 429]
    assert second.post("/api/v1/daemons/", {"node": "b"}, format="json").status_code == 201  # its own budget
    assert first.get("/api/v1/export/relayd/").status_code == 200  # polling the export is not throttled


def test_node_report_says_where_clients_come_from(node_key, viewer, two_revisions):
    node = token_client(node_key)
    peer = {"address": "192.0.2.10", "connections": 90, "of": 100}
    report = {"node": "mx1", "serial": 2, "counters": {}, "proxy_hosts": ["192.0.2.10/32"], "top_peer": peer}
    assert node.post("/api/v1/daemons/", report, format="json").status_code == 201
    [listed] = session_client(viewer).get("/api/v1/daemons/").json()["results"]
    assert (listed["proxy_hosts"], listed["top_peer"]) == (["192.0.2.10/32"], peer)
    bad = node.post("/api/v1/daemons/", {**report, "proxy_hosts": ["192.0.2.10/8"]}, format="json")
    assert bad.status_code == 400 and "proxy_hosts" in bad.json()


@pytest.mark.parametrize("method", ["get", "post"])
def test_check(ro_key, two_revisions, method):
    client = token_client(ro_key)
    query = {"client": "10.1.2.3", "recipient": "a@example.net", "authenticated": False}
    response = getattr(client, method)("/api/v1/check/", query, **({"format": "json"} if method == "post" else {}))
    body = response.json()
    assert (body["allowed"], body["rule"], body["reply"][:9]) == (True, "trusted_network", "250 2.1.5")
    bad = getattr(client, method)("/api/v1/check/", {**query, "client": "10.1.2.300"})
    assert "octet 300 is out of range" in bad.json()["client"][0]


def test_check_says_where_an_export_answers_otherwise(ro_key, two_revisions):
    response = token_client(ro_key).get("/api/v1/check/", {"client": "10.1.2.3", "recipient": "a@b@example.net"})
    body = response.json()
    assert (body["allowed"], body["rule"]) == (True, "trusted_network")
    assert [note[:27] for note in body["notes"]] == ["Exim would refuse it: 501, "]


def test_selftest_api(api, ro_key, serve_smtp, settings):
    port = serve_smtp(ClosedSink())
    settings.SELFTEST_ALLOWED_TARGETS = [f"127.0.0.1:{port}"]
    response = api.post("/api/v1/selftests/", {"target": f"127.0.0.1:{port}"}, format="json")
    assert (response.status_code, response.json()["open_relay"], response.json()["total"]) == (201, False, 20)
    assert api.post("/api/v1/selftests/", {"target": f"127.0.0.1:{port}"}, format="json").status_code == 429
    assert api.post("/api/v1/selftests/", {"target": "192.0.2.1:25"}, format="json").status_code == 400
    assert token_client(ro_key).post("/api/v1/selftests/", {}, format="json").status_code == 403


def test_check_refuses_a_body_that_is_not_an_object(api):
    response = api.post("/api/v1/check/", -38912, format="json")
    assert response.status_code == 400
    assert "Send an object" in response.json()["detail"]


def test_finding_1_a_viewers_own_token_gets_no_hashes(viewer_client, two_revisions):
    """Issue 11, finding 1, as reported: a viewer makes a token on the tokens page and calls the API with it."""
    response = viewer_client.post("/api-tokens/", {"name": "mine", "node_token": "on", "node": "mx1"})
    key = response.context["new_key"]
    client = token_client(key)
    for url in ("/api/v1/export/relayd/", "/api/v1/revisions/2/", "/api/v1/revisions/1/"):
        response = client.get(url)
        assert response.status_code == 403, url
        assert b"password_hash" not in response.content
    assert client.get("/api/v1/revisions/").status_code == 200  # what a viewer may read, it still reads
