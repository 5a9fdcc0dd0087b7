"""Shared fixtures: users in each role and clients logged in as them."""

import os

import pytest
from django.contrib.auth.models import Group, User

from tests.dnsbl_server import fake_dnsbl, fake_zone  # noqa: F401 (fixtures: the loopback DNSBL)
from tests.e2e.bundled import bundled_var, start_bundled_relayd  # noqa: F401 (fixtures: relayd as `make run` starts it)

PASSWORD = "correct horse battery staple"

# CI runs the suite as root, and relayd refuses to go on as root after binding. The relayds the tests
# start (in threads and as processes) run as the test runner; tests/deploy/test_privileges.py
# removes this to test the refusal and the drop to another user.
os.environ.setdefault("RELAYD_ALLOW_ROOT", "1")


@pytest.fixture(scope="session")
def django_db_modify_db_settings(django_db_modify_db_settings_parallel_suffix):
    """Close PostgreSQL's connection pool before the test database replaces the configured one.

    A pool keeps the database name it was opened with, and collecting tests/api/test_schema.py
    builds the API schema, which reads the node list: without this the tests would get connections
    to the configured database, not the test one.
    """
    from django.db import connections

    for connection in connections.all(initialized_only=True):
        if connection.vendor == "postgresql":
            connection.close_pool()


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup, django_db_blocker):
    """Let the flush between transactional tests TRUNCATE the audit log, which PostgreSQL refuses otherwise."""
    with django_db_blocker.unblock():
        allow_flushing_the_audit_log()


def allow_flushing_the_audit_log():
    """Switch the TRUNCATE trigger off in the test database; tests of the trigger switch it on in their transaction."""
    from django.db import connection

    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("ALTER TABLE policy_auditentry DISABLE TRIGGER policy_auditentry_no_truncate")


@pytest.fixture(autouse=True)
def _empty_cache():
    """Start each test with an empty cache: login failures or node reports of one test must not throttle the next."""
    from django.core.cache import cache

    cache.clear()


def make_user(username, role=None, **extra):
    user = User.objects.create_user(username=username, password=PASSWORD, **extra)
    if role:
        # get_or_create: transactional tests flush the groups that the roles migration made.
        user.groups.add(Group.objects.get_or_create(name=role)[0])
    return user


@pytest.fixture
def serve_smtp():
    """Return a function that serves an aiosmtpd handler on 127.0.0.1 and returns the port; stopped after."""
    from tests.relayd.controllers import SinkController

    controllers = []

    def start(handler):
        controller = SinkController(handler, hostname="127.0.0.1", port=0)
        controller.start()
        controllers.append(controller)
        return controller.port

    yield start
    for controller in controllers:
        controller.stop()


@pytest.fixture
def editor(db):
    return make_user("erin", role="editor")


@pytest.fixture
def viewer(db):
    return make_user("vic", role="viewer")


@pytest.fixture
def superuser(db):
    return make_user("root", is_superuser=True, is_staff=True)


@pytest.fixture
def editor_client(client, editor):
    client.force_login(editor)
    return client


@pytest.fixture
def viewer_client(client, viewer):
    client.force_login(viewer)
    return client
