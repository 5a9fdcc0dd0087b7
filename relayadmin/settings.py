"""Settings for relayadmin, read from the environment.

DATABASE_URL  database (default: SQLite at var/relayadmin.sqlite3; postgres://... for PostgreSQL)
SECRET_KEY    signing key (default: generated once into var/secret_key, never committed)
RELAYADMIN_AUDIT_KEY  the audit chain's HMAC key (default: generated once into var/audit_key)
ALLOWED_HOSTS comma-separated host names (default: loopback names only)
DEBUG         "1"/"true" turns debug mode on; it is off otherwise
RELAYADMIN_VAR_DIR  where all data lives (default: var/ in a checkout, ./var where installed with pip)
"""

import os
import re
import secrets
import sys
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
# In a checkout, templates/ and static/ sit beside the packages; `pip install .` puts them under
# share/relayadmin/ of the environment (pyproject.toml's data-files), and data must not go to site-packages.
IN_CHECKOUT = (BASE_DIR / "manage.py").exists()
ASSETS_DIR = BASE_DIR if IN_CHECKOUT else Path(sys.prefix) / "share" / "relayadmin"
VAR_DIR = Path(os.environ.get("RELAYADMIN_VAR_DIR", BASE_DIR / "var" if IN_CHECKOUT else Path.cwd() / "var"))
VAR_DIR.mkdir(parents=True, exist_ok=True)


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


def _load_or_create_secret(variable: str, file_name: str) -> str:
    """Return a secret from the environment variable, else from var/FILE_NAME, creating it there once (0600)."""
    if os.environ.get(variable):
        return os.environ[variable]
    key_file = VAR_DIR / file_name
    if not key_file.exists():
        # O_EXCL: two processes starting at once must not write two different keys.
        try:
            fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        else:
            with os.fdopen(fd, "w") as fh:
                fh.write(secrets.token_urlsafe(50))
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
    "django.middleware.security.SecurityMiddleware",
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
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
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

# DNS blocklist checks (docs/reputation.md). Use your own resolver: Spamhaus and others refuse
# queries that come through public resolvers. Empty: the system resolver (/etc/resolv.conf).
RELAYADMIN_DNS_RESOLVER = os.environ.get("RELAYADMIN_DNS_RESOLVER", "").strip()
RELAYADMIN_DNS_TIMEOUT = float(os.environ.get("RELAYADMIN_DNS_TIMEOUT", "5"))
RELAYADMIN_DNSBL_CONCURRENCY = int(os.environ.get("RELAYADMIN_DNSBL_CONCURRENCY", "8"))


def _env_int(name: str, default: int) -> int:
    text = os.environ.get(name, "").strip() or str(default)
    if not text.isdigit() or int(text) < 1:
        raise ImproperlyConfigured(f"{name} must be a whole number, 1 or more, not “{text}”.")
    return int(text)


# relayd nodes the dashboard tracks at most, and how often each node token may report.
RELAYADMIN_MAX_NODES = _env_int("RELAYADMIN_MAX_NODES", 100)
RELAYADMIN_NODE_REPORT_RATE = os.environ.get("RELAYADMIN_NODE_REPORT_RATE", "30/min").strip()
if not re.fullmatch(r"[1-9][0-9]*/(s|sec|second|m|min|minute|h|hour|d|day)", RELAYADMIN_NODE_REPORT_RATE):
    raise ImproperlyConfigured("RELAYADMIN_NODE_REPORT_RATE is a count per period, e.g. “30/min” or “1000/hour”.")

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# A bulk import of 10,000 networks as JSON is about 1.5 MB; Django's default cap is 2.5 MB.
DATA_UPLOAD_MAX_MEMORY_SIZE = 10 * 1024 * 1024

REST_FRAMEWORK = {
    # Token first: its challenge makes unauthenticated requests 401, not 403.
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "policy.api.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["policy.api.permissions.RolePermission"],
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
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
    # Public on purpose (anyone may read what the API looks like), but not for node tokens.
    "SERVE_PERMISSIONS": ["policy.api.permissions.PublicPermission"],
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

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
}
