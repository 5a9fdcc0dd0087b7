"""relayd's export as a long poll (?wait=N): held while unchanged, answered when a revision commits.

The requests go through the ASGI application that uvicorn serves (relayadmin.asgi), in this process.
A change made here wakes the poll in-process; a change made by "another app server" is simulated by
switching the in-process wake-up off, so that only PostgreSQL's NOTIFY (or SQLite's check) can.
"""

import asyncio
import json

import pytest
from django.db import connection

from policy import revision_feed
from policy.models import LocalDomain, PolicyRevision, TrustedNetwork
from policy.revisions import policy_change
from relayadmin.asgi import application
from tests.api.conftest import issue_token, token_client

EXPORT = "/api/v1/export/relayd/"


@pytest.fixture
def latest_etag(transactional_db):
    with policy_change():
        TrustedNetwork.objects.create(network="10.0.0.0/8")
    return f'"{PolicyRevision.objects.order_by("-serial").first().sha256}"'


async def asgi_get(key: str, query: str, etag: str | None = None) -> tuple[int, dict[str, str], bytes]:
    """Send GET EXPORT?query to the ASGI application and return the status, headers and body it answers."""
    headers = [(b"host", b"localhost"), (b"authorization", f"Token {key}".encode())]
    if etag:
        headers.append((b"if-none-match", etag.encode()))
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": EXPORT,
        "raw_path": EXPORT.encode(),
        "query_string": query.encode(),
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 80),
    }
    request_sent = False
    never = asyncio.Event()

    async def receive():
        nonlocal request_sent
        if not request_sent:
            request_sent = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await never.wait()  # the client stays connected

    sent = []

    async def send(message):
        sent.append(message)

    await application(scope, receive, send)
    start = sent[0]
    body = b"".join(message.get("body", b"") for message in sent[1:])
    return start["status"], {k.decode().lower(): v.decode() for k, v in start["headers"]}, body


def add_domain(domain: str) -> None:
    """Commit a policy change from a thread of its own, as a request on another worker would."""
    try:
        with policy_change():
            LocalDomain.objects.create(domain=domain)
    finally:
        connection.close()


async def poll_across_a_change(key: str, etag: str) -> tuple[int, dict[str, str], bytes]:
    poll = asyncio.ensure_future(asgi_get(key, f"wait={revision_feed.MAX_WAIT}", etag))
    while revision_feed.feed().waiting == 0:
        assert not poll.done(), "the long poll answered before any change"
        await asyncio.sleep(0.01)
    await asyncio.to_thread(add_domain, "pushed.example")
    # Well before the poll's own wait ends: a poll nobody woke would still be waiting.
    return await asyncio.wait_for(poll, revision_feed.MAX_WAIT / 2)


@pytest.mark.parametrize("wake_up", ["in this process", "from another app server"])
def test_a_long_poll_answers_with_the_revision_that_commits_while_it_waits(editor, latest_etag, wake_up, monkeypatch):
    if wake_up == "from another app server":
        # Only the database can tell now: NOTIFY on PostgreSQL, the per-process check on SQLite.
        monkeypatch.setattr(revision_feed, "_wake_this_process", lambda: None)
    key = issue_token(editor, name="relayd mx1", node="mx1", read_only=True)
    status, headers, body = asyncio.run(poll_across_a_change(key, latest_etag))
    assert status == 200
    latest = PolicyRevision.objects.order_by("-serial").first()
    assert headers["etag"] == f'"{latest.sha256}"'
    assert json.loads(body)["serial"] == latest.serial
    assert "pushed.example" in {domain["domain"] for domain in json.loads(body)["local_domains"]}


def test_a_node_without_the_latest_revision_gets_it_at_once(editor, latest_etag):
    key = issue_token(editor, name="relayd mx1", node="mx1", read_only=True)
    status, headers, _ = asyncio.run(asgi_get(key, "wait=30", '"stale"'))
    assert (status, headers["etag"]) == (200, latest_etag)


def test_an_unchanged_policy_gets_its_304_when_the_wait_ends(editor, latest_etag):
    key = issue_token(editor, name="relayd mx1", node="mx1", read_only=True)
    status, headers, body = asyncio.run(asgi_get(key, "wait=1", latest_etag))
    assert (status, headers["etag"], body) == (304, latest_etag, b"")


def test_callers_who_may_not_read_the_export_are_refused_at_once(viewer, latest_etag):
    status, _, _ = asyncio.run(asgi_get(issue_token(viewer, name="viewer's"), "wait=30", latest_etag))
    assert status == 403
    status, _, _ = asyncio.run(asgi_get("not-a-token", "wait=30", latest_etag))
    assert status == 401


@pytest.mark.parametrize("wait", ["-1", "1.5", "56", "soon", "３"])
def test_a_bad_wait_is_a_400_that_says_why(node_key, latest_etag, wait):
    response = token_client(node_key).get(EXPORT, {"wait": wait}, HTTP_IF_NONE_MATCH=latest_etag)
    assert response.status_code == 400
    assert "wait" in response.json()
    status, _, body = asyncio.run(asgi_get(node_key, f"wait={wait}", latest_etag))
    assert status == 400
    assert "wait" in json.loads(body)


def test_a_wsgi_server_answers_a_long_poll_at_once(node_key, latest_etag):
    """Under gunicorn's sync workers nothing is held: relayd then falls back to polling at its interval."""
    response = token_client(node_key).get(EXPORT, {"wait": "30"}, HTTP_IF_NONE_MATCH=latest_etag)
    assert response.status_code == 304
