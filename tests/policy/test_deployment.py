"""Deployment hardening: RELAYADMIN_HTTPS, trusted proxies and the CSP header (issue 11, finding 10)."""

import os
import runpy
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import Client
from django.urls import reverse

from relayadmin.proxies import is_trusted_proxy, parse_proxies

ROOT = Path(__file__).resolve().parents[2]
PROXY = "10.9.8.7"


def deploy_check(tmp_path, **env) -> subprocess.CompletedProcess:
    """Run `manage.py check --deploy` with the real settings and a production environment."""
    environ = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("RELAYADMIN_", "DJANGO_", "SECRET_KEY", "ALLOWED_HOSTS", "DEBUG"))
    }
    environ |= {
        "DJANGO_SETTINGS_MODULE": "relayadmin.settings",
        "RELAYADMIN_VAR_DIR": str(tmp_path),
        "SECRET_KEY": secrets.token_urlsafe(50),
        "ALLOWED_HOSTS": "relayadmin.example.net",
        **env,
    }
    return subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=environ,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_check_deploy_is_clean_with_relayadmin_https(tmp_path):
    result = deploy_check(tmp_path, RELAYADMIN_HTTPS="1", RELAYADMIN_TRUSTED_PROXIES="127.0.0.1,::1")
    assert result.returncode == 0, result.stderr
    assert "WARNINGS" not in result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


def test_check_deploy_warns_without_it(tmp_path):
    result = deploy_check(tmp_path)
    assert result.returncode == 1
    for check in ("security.W004", "security.W008", "security.W012", "security.W016"):
        assert check in result.stderr


HTTPS_SETTINGS = (
    "SECURE_SSL_REDIRECT",
    "SECURE_REDIRECT_EXEMPT",
    "SECURE_HSTS_SECONDS",
    "SECURE_HSTS_INCLUDE_SUBDOMAINS",
    "SECURE_HSTS_PRELOAD",
    "SESSION_COOKIE_SECURE",
    "CSRF_COOKIE_SECURE",
    "SECURE_PROXY_SSL_HEADER",
    "RELAYADMIN_TRUSTED_PROXIES",
)


@pytest.fixture
def https(settings, monkeypatch, tmp_path):
    """Apply what relayadmin/settings.py makes of RELAYADMIN_HTTPS=1 and RELAYADMIN_TRUSTED_PROXIES."""
    monkeypatch.setenv("RELAYADMIN_HTTPS", "1")
    monkeypatch.setenv("RELAYADMIN_TRUSTED_PROXIES", f"{PROXY}, 2001:db8::/64")
    monkeypatch.setenv("RELAYADMIN_VAR_DIR", str(tmp_path))
    produced = runpy.run_path(str(ROOT / "relayadmin" / "settings.py"))
    for name in HTTPS_SETTINGS:
        setattr(settings, name, produced[name])
    return settings


def test_plain_http_is_redirected_to_https(https):
    response = Client().get("/login/")
    assert response.status_code == 301
    assert response["Location"] == "https://testserver/login/"


@pytest.mark.django_db
def test_healthz_answers_plain_http_for_load_balancers(https):
    assert Client().get("/healthz").status_code == 200


@pytest.mark.django_db
@pytest.mark.parametrize("proxy", [PROXY, "::ffff:10.9.8.7", "2001:db8::1"])
def test_a_listed_proxy_is_believed_about_https(https, proxy):
    response = Client().get("/login/", REMOTE_ADDR=proxy, HTTP_X_FORWARDED_PROTO="https")
    assert response.status_code == 200
    assert response["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains"
    assert response.cookies["csrftoken"]["secure"] is True


@pytest.mark.parametrize("peer", ["203.0.113.9", "10.9.8.8", "2001:db8:0:1::1", "", "not an address"])
def test_anybody_else_claiming_https_is_not_believed(https, peer):
    response = Client().get("/login/", REMOTE_ADDR=peer, HTTP_X_FORWARDED_PROTO="https")
    assert response.status_code == 301
    assert response["Location"].startswith("https://")
    assert "Strict-Transport-Security" not in response


@pytest.mark.django_db
def test_the_session_cookie_is_secure(https, editor):
    client = Client(REMOTE_ADDR=PROXY, HTTP_X_FORWARDED_PROTO="https")
    response = client.post(reverse("login"), {"username": "erin", "password": "correct horse battery staple"})
    assert response.status_code == 302
    assert response.cookies["sessionid"]["secure"] is True
    assert response.cookies["sessionid"]["httponly"] is True


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("peer", "forwarded_for", "seen"),
    [
        (PROXY, "198.51.100.7", "198.51.100.7"),
        (PROXY, "6.6.6.6, 198.51.100.7", "198.51.100.7"),  # the left entry is the client's own claim
        (PROXY, "198.51.100.7, 10.9.8.7", "198.51.100.7"),  # through two listed proxies
        (PROXY, "::ffff:198.51.100.7", "198.51.100.7"),
        (PROXY, "198.51.100.7, garbage", PROXY),  # a malformed hop: believe nothing beyond it
        (PROXY, "", PROXY),
        ("203.0.113.9", "198.51.100.7", "203.0.113.9"),  # not a listed proxy: the header is ignored
    ],
)
def test_the_client_address_behind_a_listed_proxy(https, peer, forwarded_for, seen):
    from policy.models import AuditEntry

    Client().post(
        reverse("login"),
        {"username": "nobody", "password": "wrong"},
        REMOTE_ADDR=peer,
        HTTP_X_FORWARDED_PROTO="https",
        HTTP_X_FORWARDED_FOR=forwarded_for,
    )
    if peer == PROXY:
        assert AuditEntry.objects.get().remote_addr == seen
    else:
        assert not AuditEntry.objects.exists()  # redirected to HTTPS before the login ran


def test_a_bad_proxy_entry_stops_the_start():
    with pytest.raises(ImproperlyConfigured, match=r"“proxy\.example” is not an IP address or network"):
        parse_proxies(["10.0.0.1", "proxy.example"])


def test_proxy_matching():
    proxies = parse_proxies(["10.0.0.0/24", "::1"])
    assert is_trusted_proxy(proxies, "10.0.0.200")
    assert is_trusted_proxy(proxies, "::1")
    assert is_trusted_proxy(proxies, "::ffff:10.0.0.1")
    assert not is_trusted_proxy(proxies, "10.0.1.1")
    assert not is_trusted_proxy(proxies, None)


STRICT_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; font-src 'self'; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)


def csp(response) -> dict[str, str]:
    return dict(part.strip().split(" ", 1) for part in response["Content-Security-Policy"].split(";"))


@pytest.mark.django_db
@pytest.mark.parametrize(
    "url",
    ["/", "/restrictions/", "/domains/", "/networks/import/", "/audit/", "/check/", "/revisions/"],
)
def test_every_page_of_ours_has_the_strict_policy(editor_client, url):
    strict = dict(part.split(" ", 1) for part in STRICT_CSP.split("; "))
    response = editor_client.get(url)
    assert response.status_code == 200
    assert csp(response) == strict
    assert csp(Client().get("/login/")) == strict


@pytest.mark.django_db
def test_library_pages_may_use_inline_styles_but_never_inline_scripts(editor_client, superuser, client):
    client.force_login(superuser)
    for response in (
        client.get("/admin/"),
        editor_client.get(reverse("api:swagger-ui")),
        editor_client.get(reverse("api:trustednetwork-list"), HTTP_ACCEPT="text/html"),
    ):
        assert response.status_code == 200
        policy = csp(response)
        assert policy["script-src"] == "'self'"
        assert policy["style-src"] == "'self' 'unsafe-inline'"
        assert policy["frame-ancestors"] == "'none'"


def test_our_templates_have_no_inline_script_or_style():
    """The strict policy would block them: scripts and styles belong in static/."""
    offenders = []
    for template in (ROOT / "templates").rglob("*.html"):
        text = template.read_text()
        for needle in ("<style", " style=", "<script>", " onclick=", " onchange=", " onsubmit=", "javascript:"):
            if needle in text:
                offenders.append(f"{template.relative_to(ROOT)}: {needle.strip()}")
    assert offenders == []
