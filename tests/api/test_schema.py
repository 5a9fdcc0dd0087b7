"""Schemathesis drives every operation of the OpenAPI schema: no 5xx, and answers match the schema."""

import json
import os

import hypothesis
import pytest
import schemathesis
from django.contrib.auth.hashers import PBKDF2PasswordHasher
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.renderers import OpenApiJsonRenderer
from schemathesis.checks import not_a_server_error

# Valid and invalid data, eight requests per operation, about 40 operations: 15 to 40 s. The
# coverage phase (every boundary of every field) would take minutes on two cores, so it is off.
# A deeper hunt for 5xx: SCHEMATHESIS_EXAMPLES=200 SCHEMATHESIS_COVERAGE=1 pytest tests/api/test_schema.py
EXAMPLES_PER_OPERATION = int(os.environ.get("SCHEMATHESIS_EXAMPLES", "8"))
COVERAGE_PHASE = os.environ.get("SCHEMATHESIS_COVERAGE", "") == "1"


class FastPBKDF2Hasher(PBKDF2PasswordHasher):
    """The SMTP password format with few iterations: generated accounts must not cost a second each."""

    iterations = 1000


@pytest.fixture
def test_transaction_connection():
    """Keep the database connection across WSGI requests, as Django's test client does.

    Django closes "old" connections when a request starts and ends; inside the test's
    transaction on PostgreSQL that would close the connection that holds it.
    """
    for signal in (request_started, request_finished):
        signal.disconnect(close_old_connections)
    yield
    for signal in (request_started, request_finished):
        signal.connect(close_old_connections)


def generated_schema() -> dict:
    """Return the OpenAPI schema exactly as /api/v1/schema/ serves it, as plain JSON data.

    The endpoint takes a login or token (none exists while pytest collects this module), and
    generating the schema needs no database.
    """
    document = SchemaGenerator().get_schema(request=None, public=True)
    return json.loads(OpenApiJsonRenderer().render(document))


schema = schemathesis.openapi.from_dict(
    generated_schema(), config=schemathesis.Config.from_dict({"phases": {"coverage": {"enabled": COVERAGE_PHASE}}})
)
schema.app = get_wsgi_application()


@schema.parametrize()
@hypothesis.settings(
    max_examples=EXAMPLES_PER_OPERATION,
    deadline=None,
    derandomize=True,
    suppress_health_check=list(hypothesis.HealthCheck),
)
@pytest.mark.django_db
def test_api_conforms_to_its_schema(case, rw_key, node_key, settings, test_transaction_connection):
    settings.PASSWORD_HASHERS = ["tests.api.test_schema.FastPBKDF2Hasher"]
    settings.RELAYADMIN_NODE_REPORT_RATE = "100000/min"
    # Status reports are a node token's job; everything else an editor's.
    key = node_key if (case.method, case.path) == ("POST", "/api/v1/daemons/") else rw_key
    case.call_and_validate(
        headers={"Authorization": f"Token {key}"},
        checks=[not_a_server_error, schemathesis.checks.response_schema_conformance],
    )
