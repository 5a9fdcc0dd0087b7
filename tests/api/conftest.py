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
def caller_client(request, db):
    """Return a function that gives the client of one kind of caller of the authorisation matrix."""

    def client_for(caller: str) -> APIClient:
        if caller == "anonymous":
            return APIClient()
        if caller in ("viewer", "editor"):
            return session_client(request.getfixturevalue(caller))
        return token_client(
            request.getfixturevalue({"read-only token": "ro_key", "read-write token": "rw_key"}[caller])
        )

    return client_for
