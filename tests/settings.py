"""Test settings: the real settings, with static files served from the source tree."""

import tempfile
from pathlib import Path

from relayadmin.settings import *  # noqa: F403

# No collectstatic step in tests: serve static/ directly, as runserver does.
STORAGES = {**STORAGES, "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}}  # noqa: F405
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = True

# Hashing dashboard logins with MD5 keeps the suite fast; SMTP passwords still use pbkdf2_sha256,
# which the models ask for by name.
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher", "django.contrib.auth.hashers.PBKDF2PasswordHasher"]

# Each test starts with an empty cache (tests/conftest.py), so throttled logins never leak between tests.
CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

# Publishing in tests must not touch the developer's var/relayd/policy.json.
RELAYD_POLICY_PATH = Path(tempfile.mkdtemp(prefix="relayadmin-test-")) / "relayd" / "policy.json"
RELAYD_XCLIENT_SECRET_FILE = RELAYD_POLICY_PATH.parent / "xclient.secret"

if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":  # noqa: F405
    # A file, not shared-cache memory: concurrent writers then wait for SQLite's lock as in production.
    DATABASES["default"]["TEST"] = {"NAME": str(Path(tempfile.mkdtemp(prefix="relayadmin-test-db-")) / "test.sqlite3")}  # noqa: F405

# No test may reach the Internet: blocklist checks go to a loopback port where nothing answers,
# unless a test points them at its own fake DNSBL server.
RELAYADMIN_DNS_RESOLVER = "127.0.0.1:9"
RELAYADMIN_DNS_TIMEOUT = 1.0

# A fresh checkout's test run generates var/audit_key as it starts; its test databases are written
# with that key, so verify_audit must not take it for a lost one.
GENERATED_SECRETS = set()
