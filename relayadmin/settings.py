"""Settings for relayadmin, read from the environment.

DATABASE_URL  database (default: SQLite at var/relayadmin.sqlite3; postgres://... for PostgreSQL)
SECRET_KEY    signing key (default: generated once into var/secret_key, never committed)
RELAYADMIN_AUDIT_KEY  the audit chain's HMAC key (default: generated once into var/audit_key)
ALLOWED_HOSTS comma-separated host names (default: loopback names only)
DEBUG         "1"/"true" turns debug mode on; it is off otherwise
RELAYADMIN_VAR_DIR  where all data lives (default: var/ in a checkout, ./var where installed with pip)
RELAYADMIN_MAX_BODY_BYTES  the largest request body (default: 5 MiB)
RELAYADMIN_BULK_MAX_ROWS   the most rows in one bulk import (default: 10,000)
RELAYADMIN_HTTPS           "1": served over HTTPS only (redirect, HSTS, secure cookies)
RELAYADMIN_TRUSTED_PROXIES comma-separated proxy addresses/networks whose X-Forwarded-Proto/-For are believed
"""

import contextlib
import os
import re
import secrets
import sys
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from relayadmin.csp import POLICY as CSP_POLICY

BASE_DIR = Path(__file__).resolve().parent.parent
# In a checkout, templates/ and static/ sit beside the packages; `pip install .` puts them under
# share/relayadmin/ of the environment (pyproject.toml's data-files), and data must not go to site-packages.
IN_CHECKOUT = (BASE_DIR / "manage.py").exists()
ASSETS_DIR = BASE_DIR if IN_CHECKOUT else Path(sys.prefix) / "share" / "relayadmin"
VAR_DIR = Path(os.environ.get("RELAYADMIN_VAR_DIR", BASE_DIR / "var" if IN_CHECKOUT else Path.cwd() / "var"))
# 0700: var/ holds the secret key, the database and the snapshot with the SMTP password hashes.
# A directory that already exists keeps the mode its owner gave it. Read-only in the verify-audit
# unit: what needs a file under it says so.
with contextlib.suppress(OSError):
    VAR_DIR.mkdir(mode=0o700, parents=True, exist_ok=True)


def _create_private_file(path: Path) -> None:
    """Create an empty file readable by this user only, unless it exists.

    SQLite creates its database file (and the -wal and -shm files, which copy its mode) with
    the process umask, usually world-readable; an empty file is a valid empty database.
    """
    # Already there, or in a directory that is not: SQLite will say so when it opens it.
    with contextlib.suppress(FileExistsError, FileNotFoundError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


def _env_int(name: str, default: int) -> int:
    """Return a positive whole number from the environment; refuse to start on anything else."""
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    if not (text.isascii() and text.isdigit()) or int(text) < 1:
        raise ImproperlyConfigured(f"{name}={text!r}: use a whole number, 1 or more.")
    return int(text)


# The secrets this process generated, so that verify_audit can tell a lost audit key from a kept one.
GENERATED_SECRETS: set[str] = set()


def _load_or_create_secret(variable: str, file_name: str) -> str:
    """Return a secret from the environment variable, else from var/FILE_NAME, creating it there once (0600).

    Return "" when the file is missing and var/ is read-only (the verify-audit unit mounts it so):
    whoever uses the secret then fails with a message naming it, rather than with a traceback here.
    """
    if os.environ.get(variable):
        return os.environ[variable]
    key_file = VAR_DIR / file_name
    if not key_file.exists():
        # O_EXCL: two processes starting at once must not write two different keys.
        try:
            fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        except OSError:
            return ""
        else:
            with os.fdopen(fd, "w") as fh:
                fh.write(secrets.token_urlsafe(50))
            GENERATED_SECRETS.add(file_name)
    return key_file.read_text().strip()


SECRET_KEY = _load_or_create_secret("SECRET_KEY", "secret_key")
# The audit chain's HMAC key. It lives outside the database on purpose: whoever can write the
# database but not read this key cannot rewrite the log and recompute the chain (docs/audit.md).
AUDIT_KEY = _load_or_create_secret("RELAYADMIN_AUDIT_KEY", "audit_key")
DEBUG = _env_flag("DEBUG")
ALLOWED_HOSTS = [
    h.strip() for h in os.environ.get("ALLOWED_HOSTS", "127.0.0.1,localhost,[::1]").split(",") if h.strip()
]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "policy",
]

MIDDLEWARE = [
    "relayadmin.proxies.TrustedProxyMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "relayadmin.csp.ContentSecurityPolicyMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "policy.middleware.AuditContextMiddleware",
    "policy.middleware.PolicyChangeMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "relayadmin.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [ASSETS_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "policy.context_processors.roles",
                "policy.context_processors.version",
            ],
        },
    },
]

WSGI_APPLICATION = "relayadmin.wsgi.application"

DATABASES = {
    "default": dj_database_url.config(
        default=f"sqlite:///{VAR_DIR / 'relayadmin.sqlite3'}",
        conn_max_age=int(os.environ.get("CONN_MAX_AGE", "0")),
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql" and not DATABASES["default"]["CONN_MAX_AGE"]:
    # A new PostgreSQL connection is a new server process, about 12 ms on a busy 2-core host: more
    # than the rest of a relayd export request, which the long poll asks for anew at every change.
    # So each process keeps a pool (psycopg_pool) of up to RELAYADMIN_DB_POOL connections; 0 opens
    # one per request instead, and CONN_MAX_AGE keeps one per thread (not for the ASGI server,
    # whose requests each run in a thread of their own). A request waits at most 10 s for a
    # connection (psycopg_pool's default is 30 s, when gunicorn kills its worker): with the
    # database down it then fails, as it did at once without a pool.
    _pool_size = int(os.environ.get("RELAYADMIN_DB_POOL", "10"))
    if _pool_size:
        DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {"min_size": 1, "max_size": _pool_size, "timeout": 10}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    _sqlite_file = str(DATABASES["default"]["NAME"])
    if _sqlite_file and _sqlite_file != ":memory:" and not _sqlite_file.startswith("file:"):
        _create_private_file(Path(_sqlite_file))
    # IMMEDIATE: a transaction takes the write lock when it starts, so two writers cannot both
    # read the same "latest" audit hash or revision serial. WAL lets readers go on meanwhile.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {"transaction_mode": "IMMEDIATE", "timeout": 20, "init_command": "PRAGMA journal_mode=WAL;"}
    )

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

# Files under var/ rather than each process's memory: every worker on this host shares the
# login throttle's counts, and a restart does not reset them.
CACHES = {"default": {"BACKEND": "django.core.cache.backends.filebased.FileBasedCache", "LOCATION": VAR_DIR / "cache"}}

# Login back-off (policy/throttle.py): past the free failures, each failed login locks the
# username or the client address out twice as long as the last time, from first_lockout up to
# max_lockout seconds. A count is forgotten after forget_after seconds without a failure.
LOGIN_THROTTLE = {
    "username_free_failures": 5,
    "address_free_failures": 20,
    "first_lockout": 15,
    "max_lockout": 15 * 60,
    "forget_after": 60 * 60,
}

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "policy:dashboard"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = os.environ.get("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [ASSETS_DIR / "static"]
STATIC_ROOT = VAR_DIR / "static"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}

# Where publishing writes the snapshot that the local relayd enforces.
RELAYD_POLICY_PATH = Path(os.environ.get("RELAYD_POLICY_PATH", VAR_DIR / "relayd" / "policy.json"))

# The bundled relayd's SMTP address, which the open-relay self-test checks by default; other
# non-loopback targets must be listed here (comma-separated host:port) before anyone may test them.
# Where relayd nodes on this host reach the dashboard (the bundled relayd reports its status there).
RELAYADMIN_URL = os.environ.get("RELAYADMIN_URL", "http://127.0.0.1:8000").rstrip("/")
RELAYD_SMTP_TARGET = os.environ.get("RELAYD_SMTP_TARGET", "127.0.0.1:2525")
# The self-test may test RELAYD_SMTP_TARGET and these host:port targets, nothing else: it must not
# be a port scanner (issue 11, finding 9).
SELFTEST_ALLOWED_TARGETS = [t.strip() for t in os.environ.get("SELFTEST_ALLOWED_TARGETS", "").split(",") if t.strip()]
# The secret the self-test's XCLIENT carries (relayd's --xclient-secret-file); runrelay makes it (0600).
RELAYD_XCLIENT_SECRET_FILE = Path(
    os.environ.get("RELAYD_XCLIENT_SECRET_FILE", RELAYD_POLICY_PATH.parent / "xclient.secret")
)

# DNS blocklist checks (docs/reputation.md). Use your own resolver: Spamhaus and others refuse
# queries that come through public resolvers. Empty: the system resolver (/etc/resolv.conf).
RELAYADMIN_DNS_RESOLVER = os.environ.get("RELAYADMIN_DNS_RESOLVER", "").strip()
RELAYADMIN_DNS_TIMEOUT = float(os.environ.get("RELAYADMIN_DNS_TIMEOUT", "5"))
RELAYADMIN_DNSBL_CONCURRENCY = _env_int("RELAYADMIN_DNSBL_CONCURRENCY", 8)


# relayd nodes the dashboard tracks at most, and how often each node token may report.
RELAYADMIN_MAX_NODES = _env_int("RELAYADMIN_MAX_NODES", 100)
RELAYADMIN_NODE_REPORT_RATE = os.environ.get("RELAYADMIN_NODE_REPORT_RATE", "30/min").strip()
if not re.fullmatch(r"[1-9][0-9]*/(s|sec|second|m|min|minute|h|hour|d|day)", RELAYADMIN_NODE_REPORT_RATE):
    raise ImproperlyConfigured("RELAYADMIN_NODE_REPORT_RATE is a count per period, e.g. “30/min” or “1000/hour”.")

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Bounds on one request, so that a single client cannot tie up a worker or the database
# (issue 11, finding 6). A bulk import of 10,000 networks as JSON is about 1.5 MB. The body
# limit is Django's own setting, and the API's JSON parser enforces it too (Django only checks
# form bodies); a larger body gets a 413. More rows than the cap get a 400.
DATA_UPLOAD_MAX_MEMORY_SIZE = _env_int("RELAYADMIN_MAX_BODY_BYTES", 5 * 1024 * 1024)
BULK_MAX_ROWS = _env_int("RELAYADMIN_BULK_MAX_ROWS", 10_000)

REST_FRAMEWORK = {
    # Token first: its challenge makes unauthenticated requests 401, not 403.
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "policy.api.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["policy.api.permissions.RolePermission"],
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    # DRF's parsers, bounded in size (a 413) and, for JSON, in depth (a 400, not a 500).
    "DEFAULT_PARSER_CLASSES": [
        "policy.api.parsers.BoundedJSONParser",
        "policy.api.parsers.BoundedFormParser",
        "policy.api.parsers.BoundedMultiPartParser",
    ],
    "DEFAULT_PAGINATION_CLASS": "policy.api.pagination.Pagination",
    "DEFAULT_RENDERER_CLASSES": [
        "rest_framework.renderers.JSONRenderer",
        "rest_framework.renderers.BrowsableAPIRenderer",
    ],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "TEST_REQUEST_DEFAULT_FORMAT": "json",
}

SPECTACULAR_SETTINGS = {
    "TITLE": "relayadmin API",
    "DESCRIPTION": "Automate the relay policy: trusted and denied networks, internal addresses, local domains, "
    "SMTP users, the routing restrictions and the audit log. Authenticate with `Authorization: Token <key>`.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    # The schema maps every endpoint, parameter and error message: an attacker's survey for
    # free. It is for people and scripts that may use the API, so it takes their role, as
    # every other read does: a viewer or editor session, or any token (issue 11, finding 11).
    "SERVE_PERMISSIONS": ["policy.api.permissions.RolePermission"],
    # Separate request and response components, so write-only and read-only fields are exact.
    "COMPONENT_SPLIT_REQUEST": True,
    # Swagger UI and Redoc from the installed sidecar package: the UI must work without internet access.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = True
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
CONTENT_SECURITY_POLICY = {"DIRECTIVES": CSP_POLICY}

# HTTPS (issue 11, finding 10). RELAYADMIN_HTTPS=1 says the dashboard is served only over
# HTTPS: plain HTTP is redirected, browsers are told so for a year (HSTS, subdomains
# included) and cookies travel over HTTPS only. Behind a reverse proxy that ends TLS, list
# it in RELAYADMIN_TRUSTED_PROXIES: its X-Forwarded-Proto is believed, nobody else's.
HTTPS = _env_flag("RELAYADMIN_HTTPS")
RELAYADMIN_TRUSTED_PROXIES = [
    proxy.strip() for proxy in os.environ.get("RELAYADMIN_TRUSTED_PROXIES", "").split(",") if proxy.strip()
]
if RELAYADMIN_TRUSTED_PROXIES:
    # Safe only with TrustedProxyMiddleware, which drops the header from every other peer.
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
if HTTPS:
    SECURE_SSL_REDIRECT = True
    # Load balancers probe /healthz over plain HTTP on the app server's own address.
    SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
    SECURE_HSTS_SECONDS = _env_int("RELAYADMIN_HSTS_SECONDS", 365 * 24 * 3600)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = _env_flag("RELAYADMIN_HSTS_PRELOAD")
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    if not SECURE_HSTS_PRELOAD:
        # Asking for the browsers' preload list is a decision for the owner of the whole
        # registrable domain (hstspreload.org), not for one app on one host name.
        SILENCED_SYSTEM_CHECKS = ["security.W021"]

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
}
