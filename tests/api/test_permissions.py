"""The authorisation matrix: every API endpoint and page against every kind of caller, as data.

Callers: anonymous; viewer, editor and superuser sessions; a viewer's token (read-write, the worst
case), an editor's token, an editor's read-only token and a node token (issue 11). Pages ignore
tokens, so a token alone gets the login page there.
"""

import io
import tarfile
from dataclasses import dataclass

import pytest
from django.contrib.auth.models import User
from django.urls import get_resolver, reverse
from rest_framework.test import APIClient

from policy.models import (
    AuditEntry,
    Blocklist,
    LocalDomain,
    PolicyRevision,
    RelayNode,
    RoutingRestrictions,
    SelfTestRun,
    SmtpUser,
    WatchedAddress,
)
from policy.revisions import policy_change
from tests.api import test_endpoints
from tests.api.base import APITestBase
from tests.api.conftest import issue_token, token_client

pytestmark = pytest.mark.django_db

SESSIONS = ["viewer", "editor", "superuser"]
TOKENS = ["viewer token", "editor token", "read-only token", "node token"]
CALLERS = ["anonymous", *SESSIONS, *TOKENS]
WRITERS = frozenset({"editor", "superuser", "editor token"})
READERS = frozenset({"viewer", "viewer token", "read-only token"}) | WRITERS
# What carries the SMTP password hashes: editors only, in any form but a node token...
SECRET_READERS = frozenset({"editor", "superuser", "editor token", "read-only token"})
# ...except relayd's export, which is a node token's job.
RELAYD_EXPORT = SECRET_READERS | {"node token"}
NODES = frozenset({"node token"})
NODE_NAME = "mx1"
NODE_REPORT = {"node": NODE_NAME, "serial": 1, "tls": True, "counters": {"accepted": 1}}


@dataclass(frozen=True)
class Call:
    endpoint: str
    method: str
    success: int
    body: object = None
    detail: bool = False
    callers: frozenset | None = None  # who succeeds, where it is not the usual readers or writers
    kwargs: tuple = ()

    @property
    def writes(self) -> bool:
        return self.method not in ("get", "head", "options")

    def expected(self, caller: str) -> int:
        allowed = self.callers or (WRITERS if self.writes else READERS)
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
    Call("policyrevision", "get", 200, detail=True, callers=SECRET_READERS),
    Call("policyrevision-rollback", "post", 201, {"reason": "matrix"}),
    Call("export", "get", 200, kwargs=(("fmt", "relayd"),), callers=RELAYD_EXPORT),
    Call("export", "get", 200, kwargs=(("fmt", "postfix"),)),
    Call("export", "get", 200, kwargs=(("fmt", "exim"),)),
    Call("relaynode", "get", 200),
    Call("relaynode", "post", 201, NODE_REPORT, callers=NODES),
    Call("relaynode", "delete", 204, detail=True),
    Call("check", "get", 200, {"client": "10.1.2.3", "recipient": "a@example.org"}),
    Call("check", "post", 200, {"client": "10.1.2.3", "recipient": "a@example.org"}, callers=READERS),
    Call("selftestrun", "get", 200),
    Call("selftestrun", "get", 200, detail=True),
    Call("selftestrun", "post", 201, {}),  # the bundled relayd, where nothing listens here: a stored error
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
    Call("api-root", "get", 200),
    Call("schema", "get", 200),
]


@pytest.fixture(autouse=True)
def selftest_target(settings):
    """The bundled relayd of the self-test calls: a closed loopback port, so that runs end at once."""
    settings.RELAYD_SMTP_TARGET = "127.0.0.1:1"


def url_for(call: Call) -> str:
    if call.endpoint in RESOURCES:
        suffix = "detail" if call.detail else "list"
        if call.detail:
            return reverse(f"api:{call.endpoint}-{suffix}", args=[RESOURCES[call.endpoint]().make().pk])
        return reverse(f"api:{call.endpoint}-{suffix}")
    if call.endpoint.startswith("policyrevision"):
        for domain in ("a.example", "b.example"):  # two revisions, so that rolling back to 1 changes something
            with policy_change():
                LocalDomain.objects.get_or_create(domain=domain)
        if call.endpoint == "policyrevision":
            return reverse("api:policyrevision-detail", args=[1]) if call.detail else reverse("api:policyrevision-list")
        return reverse("api:policyrevision-rollback", args=[1])
    if call.endpoint == "selftestrun" and call.detail:
        run = SelfTestRun.objects.create(target="127.0.0.1:1", run_by_name="matrix", error="refused")
        return reverse("api:selftestrun-detail", args=[run.pk])
    if call.endpoint == "relaynode" and call.detail:
        return reverse("api:relaynode-detail", args=[RelayNode.objects.get_or_create(name="retired")[0].name])
    if call.endpoint in ("relaynode", "selftestrun"):
        return reverse(f"api:{call.endpoint}-list")
    if call.endpoint in ("watchedaddress", "blocklist"):
        if not call.detail:
            return reverse(f"api:{call.endpoint}-list")
        made = WatchedAddress.objects.create(address="81.2.69.143") if call.endpoint == "watchedaddress" else None
        return reverse(f"api:{call.endpoint}-detail", args=[(made or Blocklist.objects.first()).pk])
    if call.endpoint == "auditentry":
        RoutingRestrictions.objects.get_or_create(pk=1)  # makes an entry to read
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


def test_every_api_endpoint_is_in_the_matrix():
    covered = {call.endpoint for call in CALLS}
    covered |= {f"{name}-{kind}" for name in RESOURCES for kind in ("list", "detail")}
    covered |= {"policyrevision-list", "policyrevision-detail", "auditentry-list", "auditentry-detail"}
    covered |= {"relaynode-list", "relaynode-detail", "selftestrun-list", "selftestrun-detail"}
    covered |= {f"{name}-{kind}" for name in ("watchedaddress", "blocklist") for kind in ("list", "detail")}
    covered |= {page.name.removeprefix("api:") for page in PAGES if page.name.startswith("api:")}  # session pages
    names = {name for name in get_resolver().namespace_dict["api"][1].reverse_dict if isinstance(name, str)}
    assert names - covered == set()


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


@dataclass(frozen=True)
class Page:
    """A page of the web UI, who may open it (a role) and what success looks like."""

    name: str
    role: str  # "public", "viewer", "editor", "superuser" or "admin" (the Django admin, which has its own login)
    args: tuple = ()
    query: object = ""  # text, or a function that makes the objects the query names and returns it
    method: str = "get"
    success: int = 200
    data: dict | None = None

    def url(self) -> str:
        query = self.query() if callable(self.query) else self.query
        return reverse(self.name, args=[arg() if callable(arg) else arg for arg in self.args]) + query

    def expected(self, caller: str) -> int | str:
        if self.role == "public":
            return self.success
        if caller not in SESSIONS:
            return "login"  # pages ignore API tokens: a token alone is not signed in
        allowed = {"viewer": SESSIONS, "editor": ["editor", "superuser"]}.get(self.role, ["superuser"])
        if caller in allowed:
            return self.success
        return "login" if self.role == "admin" else 403


def a_domain():
    return LocalDomain.objects.create(domain=f"d{LocalDomain.objects.count()}.example").pk


def an_smtp_user():
    return (SmtpUser.objects.filter(username="printer").first() or test_endpoints.TestSmtpUsers().make()).pk


def a_revision():
    with policy_change():
        LocalDomain.objects.create(domain=f"r{LocalDomain.objects.count()}.example")
    return PolicyRevision.objects.order_by("-serial").first().serial


def two_revisions():
    return f"?a={a_revision()}&b={a_revision()}"


def a_user():
    return (User.objects.filter(username="someone").first() or User.objects.create_user("someone")).pk


def a_watched_address():
    return WatchedAddress.objects.get_or_create(address="81.2.69.144")[0].pk


def a_blocklist():
    return Blocklist.objects.get_or_create(zone="dnsbl.example.net")[0].pk


def a_node():
    return RelayNode.objects.get_or_create(name="retired")[0].pk


def a_selftest_run():
    return SelfTestRun.objects.create(target="127.0.0.1:1", run_by_name="matrix", error="refused").pk


PAGES = [
    Page("policy:dashboard", "viewer"),
    Page("api:swagger-ui", "viewer"),  # the API docs sign in like pages: see test_schema_access.py
    Page("api:redoc", "viewer"),
    Page("policy:restrictions", "viewer"),
    Page("policy:restrictions-entry-add", "editor", ("trusted",)),
    Page("policy:domains", "viewer"),
    Page("policy:domain-add", "editor"),
    Page("policy:domain-edit", "editor", (a_domain,)),
    Page("policy:domain-delete", "editor", (a_domain,)),
    Page("policy:smtp-users", "viewer"),
    Page("policy:smtp-user-add", "editor"),
    Page("policy:smtp-user-edit", "editor", (an_smtp_user,)),
    Page("policy:smtp-user-delete", "editor", (an_smtp_user,)),
    Page("policy:check", "viewer"),
    Page("policy:check", "viewer", query="?client=10.1.2.3&recipient=a%40example.org"),
    Page("policy:selftest-start", "editor", method="post", success=302),
    Page("policy:selftest", "viewer", (a_selftest_run,)),
    Page("policy:node-forget", "editor", (a_node,)),
    Page("policy:exports", "viewer"),
    Page("policy:export", "editor", ("relayd",)),
    Page("policy:export", "viewer", ("postfix",)),
    Page("policy:export", "viewer", ("exim",)),
    Page("policy:audit", "viewer"),
    Page("policy:audit", "viewer", query="?export=csv"),
    Page("policy:audit", "viewer", query="?export=json"),
    Page("policy:revisions", "viewer"),
    Page("policy:revision", "viewer", (a_revision,)),
    Page("policy:revision-snapshot", "viewer", (a_revision,)),  # password hashes masked, unlike the relayd export
    Page("policy:revision-diff", "viewer", query=two_revisions),
    Page("policy:revision-rollback", "editor", (a_revision,), method="post", success=302),
    Page("policy:api-tokens", "viewer"),
    Page("policy:network-import", "viewer"),
    Page("policy:network-export", "viewer", ("trusted",)),
    Page("policy:reputation", "viewer"),
    Page("policy:reputation-address-add", "editor", method="post", success=302, data={"address": "2a00:1450:4001::25"}),
    Page("policy:reputation-address", "viewer", (a_watched_address,)),
    Page("policy:reputation-address-delete", "editor", (a_watched_address,)),
    Page("policy:reputation-check", "editor", method="post", success=302),  # its thread starts on commit: never here
    Page("policy:reputation-check-status", "viewer"),
    Page("policy:blocklist-add", "editor"),
    Page("policy:blocklist-edit", "editor", (a_blocklist,)),
    Page("policy:blocklist-delete", "editor", (a_blocklist,)),
    Page("policy:users", "superuser"),
    Page("policy:user-add", "superuser"),
    Page("policy:user-edit", "superuser", (a_user,)),
    Page("policy:user-password-reset", "superuser", (a_user,), method="post"),  # shows the new password once
    Page("admin:index", "admin"),
    Page("admin:auth_user_changelist", "admin"),
    Page("healthz", "public"),
]


def outcome(response) -> int | str:
    if response.status_code == 302 and "login" in response.url:
        return "login"
    return response.status_code


def page_id(page: Page) -> str:
    args = "".join(str(arg) for arg in page.args if isinstance(arg, str))
    return f"{page.method}-{page.name.rpartition(':')[2]}{args}{page.query if isinstance(page.query, str) else ''}"


@pytest.mark.parametrize("caller", CALLERS)
@pytest.mark.parametrize(
    "page", PAGES, ids=[f"{page_id(p)}{p.query if isinstance(p.query, str) else ''}" for p in PAGES]
)
def test_page_matrix(caller_client, caller, page):
    url = page.url()
    client = caller_client(caller)
    response = client.get(url) if page.method == "get" else client.post(url, page.data, format="multipart")
    assert outcome(response) == page.expected(caller), (url, response.status_code)


def test_every_page_is_in_the_matrix():
    covered = {page.name.partition(":")[2] for page in PAGES}
    # The entry dialog's edit form is the add form on an existing row; the import preview needs an upload
    # first, and token revocation is tested with its owner (tests/api/test_tokens.py).
    covered |= {"restrictions-entry-edit", "network-import-preview", "api-token-revoke"}
    names = {name for name in get_resolver().namespace_dict["policy"][1].reverse_dict if isinstance(name, str)}
    assert names - covered == set()


# Callers that must never see a password hash, anywhere (issue 11, finding 1).
NO_SECRETS = ["viewer", "viewer token", "node token"]


@pytest.fixture
def secrets_everywhere(editor):
    """Put hashes wherever they could leak: a revision's snapshot, a diff, and the audit log of a change."""
    with policy_change():
        account = SmtpUser(username="printer@example.org")
        account.set_password("the first long secret")
        account.save()
    with policy_change():
        account.set_password("the second long secret")
        account.save()
    return account


def known_hashes() -> list[str]:
    return [
        "pbkdf2_",
        *SmtpUser.objects.values_list("password_hash", flat=True),
        *User.objects.values_list("password", flat=True),
    ]


def readable_text(response) -> str:
    """Return the response as text, a downloaded bundle's files unpacked, so nothing hides in a .tar.gz."""
    body = b"".join(response.streaming_content) if response.streaming else response.content
    if response.get("Content-Type", "").startswith("application/gzip"):
        with tarfile.open(fileobj=io.BytesIO(body)) as archive:
            files = [archive.extractfile(member) for member in archive.getmembers() if member.isfile()]
            body = b"\n".join(file.read() for file in files)
    return body.decode(errors="replace")


@pytest.mark.parametrize("caller", NO_SECRETS)
def test_no_password_hash_reaches_viewers_or_node_tokens(caller_client, caller, secrets_everywhere):
    client = caller_client(caller)
    reached = []
    for call in CALLS:
        if call.writes or (caller == "node token" and call.callers == RELAYD_EXPORT):
            continue  # relayd's export is the node token's job: SMTP AUTH needs the hashes
        url = url_for(call)
        for accept in ("application/json", "text/html"):  # the browsable API renders differently
            reached.append((url, client.get(url, call.body, HTTP_ACCEPT=accept)))
    reached += [(page.url(), client.get(page.url())) for page in PAGES if page.method == "get"]
    hashes = known_hashes()
    read = 0
    for url, response in reached:
        if response.status_code != 200:
            continue
        read += 1
        text = readable_text(response)
        assert not [secret for secret in hashes if secret in text], url
    assert read >= (20 if caller != "node token" else 0)


def test_the_hash_check_would_see_a_leak(caller_client, secrets_everywhere):
    """The node token's relayd export holds the hashes, so the search above is not blind."""
    body = caller_client("node token").get(reverse("api:export", kwargs={"fmt": "relayd"})).content.decode()
    assert secrets_everywhere.password_hash in body
    assert "pbkdf2_" in body
