"""The OpenAPI schema and its docs are for people and scripts with a role, not the public (issue 11, finding 11)."""

import pytest
from django.test import Client
from django.urls import reverse

from tests.api.conftest import token_client
from tests.conftest import make_user

pytestmark = pytest.mark.django_db

SCHEMA = reverse("api:schema")
DOCS = [reverse("api:swagger-ui"), reverse("api:redoc")]


def test_anonymous_callers_get_no_schema():
    response = Client().get(SCHEMA)
    assert response.status_code == 401
    assert b"paths" not in response.content


@pytest.mark.parametrize("url", DOCS)
def test_anonymous_browsers_are_sent_to_log_in_for_the_docs(url):
    response = Client().get(url)
    assert response.status_code == 302
    assert response.url == f"{reverse('login')}?next={url}"


@pytest.mark.parametrize("url", DOCS)
def test_the_docs_for_a_viewer(viewer_client, url):
    response = viewer_client.get(url)
    assert response.status_code == 200
    assert SCHEMA in response.content.decode()


def test_the_schema_for_a_token_and_for_a_session(ro_key, viewer_client):
    for client in (token_client(ro_key), viewer_client):
        response = client.get(SCHEMA, HTTP_ACCEPT="application/vnd.oai.openapi+json")
        assert response.status_code == 200
        assert "/api/v1/trusted-networks/bulk/" in response.json()["paths"]


@pytest.mark.parametrize("url", [SCHEMA, *DOCS])
def test_a_user_without_a_role_gets_403(url):
    client = Client()
    client.force_login(make_user("nobody"))
    assert client.get(url).status_code == 403


def test_swagger_ui_starts_from_a_script_file_not_inline_script(viewer_client):
    """The CSP allows no inline script: the split view serves Swagger UI's start-up code as a file."""
    page = viewer_client.get(reverse("api:swagger-ui")).content.decode()
    assert "<script>" not in page
    script = viewer_client.get(reverse("api:swagger-ui"), {"script": ""})
    assert script.status_code == 200
    assert script["Content-Type"].startswith("application/javascript")
    assert SCHEMA in script.content.decode()
