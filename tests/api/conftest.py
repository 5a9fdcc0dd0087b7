"""API fixtures: tokens and clients for each kind of caller."""

import pytest
from rest_framework.test import APIClient

from policy.models import ApiToken


def issue_token(user, name="automation", **fields) -> str:
    """Create a token for the user and return its key."""
    token = ApiToken(user=user, name=name, **fields)
    key = token.generate_key()
    token.save()
    return key


def token_client(key) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return client


def session_client(user) -> APIClient:
    client = APIClient()
    client.force_login(user)
    return client


@pytest.fixture
def rw_key(editor):
    return issue_token(editor, name="rw")


@pytest.fixture
def ro_key(editor):
    return issue_token(editor, name="ro", read_only=True)


@pytest.fixture
def api(rw_key):
    """A client with the editor's read-write token: what automation uses."""
    return token_client(rw_key)


@pytest.fixture
def node_key(editor):
    """A node token for relayd node “mx1”, owned by an editor (as only editors may make one)."""
    return issue_token(editor, name="relayd mx1", node="mx1", read_only=True)


@pytest.fixture
def caller_client(request, db):
    """Return a function that gives the client of one kind of caller of the authorisation matrix."""
    token_fixtures = {
        "editor token": "rw_key",
        "read-only token": "ro_key",
        "node token": "node_key",
    }

    def client_for(caller: str) -> APIClient:
        if caller == "anonymous":
            return APIClient()
        if caller in ("viewer", "editor", "superuser"):
            return session_client(request.getfixturevalue(caller))
        if caller == "viewer token":
            # Read-write, as a token made before its user became a viewer would be: the role still rules.
            return token_client(issue_token(request.getfixturevalue("viewer"), name="viewer's"))
        return token_client(request.getfixturevalue(token_fixtures[caller]))

    return client_for
