"""The authorisation matrix: every endpoint and method against every kind of caller."""

from dataclasses import dataclass

import pytest
from django.urls import reverse
from rest_framework.test import APIClient

from policy.models import AuditEntry, Blocklist, LocalDomain, RoutingRestrictions, WatchedAddress
from policy.revisions import policy_change
from tests.api import test_endpoints
from tests.api.base import APITestBase
from tests.api.conftest import issue_token, token_client

pytestmark = pytest.mark.django_db

WRITERS = {"editor", "read-write token"}
READERS = {"viewer", "read-only token"} | WRITERS
PUBLIC = {"anonymous"} | READERS
# What carries password hashes, or is a node's job: tokens of any kind, and editors (not viewer sessions).
NODES_AND_EDITORS = frozenset({"editor", "read-only token", "read-write token"})
NODE_REPORT = {"node": "mx1", "serial": 1, "tls": True, "counters": {"accepted": 1}}


@dataclass(frozen=True)
class Call:
    endpoint: str
    method: str
    success: int
    body: object = None
    detail: bool = False
    public: bool = False
    callers: frozenset | None = None  # who succeeds, where it is not the usual readers or writers
    kwargs: tuple = ()

    @property
    def writes(self) -> bool:
        return self.method not in ("get", "head", "options")

    def expected(self, caller: str) -> int:
        allowed = self.callers or (PUBLIC if self.public else WRITERS if self.writes else READERS)
        if caller in allowed:
            return self.success
        return 401 if caller == "anonymous" else 403


def resource_calls(test_class: type[APITestBase]) -> list[Call]:
    name = test_class.basename
    calls = [
        Call(name, "get", 200),
        Call(name, "get", 200, detail=True),
        Call(name, "post", 201, test_class.create_data),
        Call(name, "put", 200, test_class.create_data, detail=True),
        Call(name, "patch", 200, test_class.update_data, detail=True),
        Call(name, "delete", 204, detail=True),
    ]
    if name.endswith("network"):
        calls.append(Call(f"{name}-bulk", "post", 200, [test_class.create_data]))
    return calls


RESOURCES = {
    cls.basename: cls
    for cls in vars(test_endpoints).values()
    if isinstance(cls, type) and cls.__name__.startswith("Test")
}
FLAGS = {"allow_authenticated": True, "allow_listed_ips": False, "allow_internal_addresses": False}
CALLS = [
    *(call for cls in RESOURCES.values() for call in resource_calls(cls)),
    Call("restrictions", "get", 200),
    Call("restrictions", "put", 200, FLAGS),
    Call("restrictions", "patch", 200, {"allow_listed_ips": True}),
    Call("auditentry", "get", 200),
    Call("auditentry", "get", 200, detail=True),
    Call("policyrevision", "get", 200),
    Call("policyrevision", "get", 200, detail=True, callers=NODES_AND_EDITORS),
    Call("policyrevision-rollback", "post", 201, {"reason": "matrix"}),
    Call("export", "get", 200, kwargs=(("fmt", "relayd"),), callers=NODES_AND_EDITORS),
    Call("export", "get", 200, kwargs=(("fmt", "postfix"),)),
    Call("export", "get", 200, kwargs=(("fmt", "exim"),)),
    Call("relaynode", "get", 200),
    Call("relaynode", "post", 201, NODE_REPORT, callers=NODES_AND_EDITORS),
    Call("check", "get", 200, {"client": "10.1.2.3", "recipient": "a@example.org"}),
    Call("check", "post", 200, {"client": "10.1.2.3", "recipient": "a@example.org"}, callers=frozenset(READERS)),
    Call("selftestrun", "get", 200),
    Call("selftestrun", "post", 201, {"target": "127.0.0.1:1"}),  # nothing listens: a stored error
    Call("watchedaddress", "get", 200),
    Call("watchedaddress", "post", 201, {"address": "81.2.69.142"}),
    Call("watchedaddress", "patch", 200, {"description": "mx1"}, detail=True),
    Call("watchedaddress", "delete", 204, detail=True),
    Call("blocklist", "get", 200),
    Call("blocklist", "post", 201, {"zone": "dnsbl.example.net"}),
    Call("blocklist", "put", 200, {"zone": "dnsbl.example.net"}, detail=True),
    Call("blocklist", "delete", 204, detail=True),
    Call("reputation-check", "post", 202),  # the thread starts on commit, which this test never reaches
    Call("reputation-metrics", "get", 200),
    Call("schema", "get", 200),  # the docs pages, for people, are in test_schema_access.py
]
CALLERS = ["anonymous", "viewer", "editor", "read-only token", "read-write token"]


def url_for(call: Call) -> str:
    if call.endpoint in RESOURCES:
        suffix = "detail" if call.detail else "list"
        if call.detail:
            return reverse(f"api:{call.endpoint}-{suffix}", args=[RESOURCES[call.endpoint]().make().pk])
        return reverse(f"api:{call.endpoint}-{suffix}")
    if call.endpoint.startswith("policyrevision"):
        for domain in ("a.example", "b.example"):  # two revisions, so that rolling back to 1 changes something
            with policy_change():
                LocalDomain.objects.create(domain=domain)
        if call.endpoint == "policyrevision":
            return reverse("api:policyrevision-detail", args=[1]) if call.detail else reverse("api:policyrevision-list")
        return reverse("api:policyrevision-rollback", args=[1])
    if call.endpoint in ("relaynode", "selftestrun"):
        return reverse(f"api:{call.endpoint}-list")
    if call.endpoint in ("watchedaddress", "blocklist"):
        if not call.detail:
            return reverse(f"api:{call.endpoint}-list")
        made = WatchedAddress.objects.create(address="81.2.69.143") if call.endpoint == "watchedaddress" else None
        return reverse(f"api:{call.endpoint}-detail", args=[(made or Blocklist.objects.first()).pk])
    if call.endpoint == "auditentry":
        RoutingRestrictions.objects.create()  # makes an entry to read
        entry = AuditEntry.objects.first()
        return reverse("api:auditentry-detail", args=[entry.pk]) if call.detail else reverse("api:auditentry-list")
    return reverse(f"api:{call.endpoint}", kwargs=dict(call.kwargs))


@pytest.mark.parametrize("caller", CALLERS)
@pytest.mark.parametrize(
    "call",
    CALLS,
    ids=[f"{c.method}-{c.endpoint}{'-detail' if c.detail else ''}{''.join(v for _, v in c.kwargs)}" for c in CALLS],
)
def test_matrix(caller_client, caller, call):
    response = getattr(caller_client(caller), call.method)(url_for(call), call.body, format="json")
    assert response.status_code == call.expected(caller), getattr(response, "data", response)


def test_a_viewers_read_write_token_still_cannot_write(viewer):
    key = issue_token(viewer, read_only=False)
    response = token_client(key).post(reverse("api:trustednetwork-list"), {"network": "10.0.0.0/8"})
    assert response.status_code == 403
    assert response.json() == {"detail": "Only editors may change the relay policy."}


def test_read_only_token_says_why(ro_key):
    response = token_client(ro_key).delete(reverse("api:restrictions"))
    assert response.status_code == 403
    assert "read-only" in response.json()["detail"]


def test_session_writes_need_the_csrf_token(editor):
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(editor)
    response = client.post(reverse("api:trustednetwork-list"), {"network": "10.0.0.0/8"})
    assert response.status_code == 403
    assert "CSRF" in response.json()["detail"]


def test_browsable_api_works_for_logged_in_users(editor_client):
    response = editor_client.get(reverse("api:trustednetwork-list"), HTTP_ACCEPT="text/html")
    assert response.status_code == 200
    assert "Trusted networks" in response.content.decode()


def test_swagger_ui_is_served_from_this_server(viewer_client):
    """The docs must work on a closed network: no CDN."""
    client = viewer_client
    page = client.get(reverse("api:swagger-ui")).content.decode()
    assert "cdn" not in page.lower()
    bundle = "/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js"
    assert bundle in page
    assert client.get(bundle).status_code == 200
