"""Hostile input gets a 400 or a form error that says what is wrong, never a 500 (issue 11, finding 7)."""

import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from policy.api.parsers import MAX_JSON_DEPTH, json_depth
from policy.models import LocalDomain, SelfTestRun, TrustedNetwork

pytestmark = pytest.mark.django_db

TRUSTED = reverse("api:trustednetwork-list")
# "²" is a digit to str.isdigit() but not to int(); "٨" (Arabic-Indic eight) is 8 to int().
UNICODE_DIGITS = ["²", "٨", "1٦", "²4"]


@pytest.fixture
def api(api):
    """The editor's token client, answering a server error with a 500 instead of raising it."""
    api.raise_request_exception = False
    return api


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


@pytest.mark.parametrize(
    "url",
    [TRUSTED, reverse("api:trustednetwork-bulk"), reverse("api:check"), reverse("api:restrictions")],
)
@pytest.mark.parametrize("depth", [1000, 100_000, MAX_JSON_DEPTH + 1])
def test_deeply_nested_json_is_refused(api, url, depth):
    method = "PUT" if url == reverse("api:restrictions") else "POST"
    response = api.generic(method, url, nested(depth), content_type="application/json")
    assert response.status_code == 400
    assert response.json() == {
        "detail": f"JSON parse error - the document is nested more than {MAX_JSON_DEPTH} levels deep."
    }


def test_json_at_the_depth_limit_is_parsed(api):
    response = api.generic("POST", reverse("api:check"), nested(MAX_JSON_DEPTH), content_type="application/json")
    assert response.status_code == 400
    assert response.json()["detail"].startswith("Send an object with client, recipient")
    assert json_depth(json.loads(nested(MAX_JSON_DEPTH))) == MAX_JSON_DEPTH
    assert json_depth({"a": [1, {"b": []}]}) == 4
    assert json_depth("text") == 0


@pytest.mark.parametrize("digit", UNICODE_DIGITS)
@pytest.mark.parametrize("template", ["10.0.0.0/{}", "2001:db8::/{}", "10.0.0.0/255.255.0.{}"])
def test_unicode_digits_in_prefixes_and_masks_are_refused_by_the_api(api, template, digit):
    response = api.post(TRUSTED, {"network": template.format(digit)})
    assert response.status_code == 400
    (message,) = response.json()["network"]
    assert "is not a subnet mask" in message or "is not a prefix length" in message
    assert not TrustedNetwork.objects.exists()


@pytest.mark.parametrize("network", ["1٠.0.0.0/8", "10.0.0.٣", "١٢٧.0.0.1"])
def test_unicode_digits_in_addresses_are_refused(api, network):
    response = api.post(TRUSTED, {"network": network})
    assert response.status_code == 400
    assert "is not an IP address" in response.json()["network"][0]


@pytest.mark.parametrize("digit", UNICODE_DIGITS)
def test_unicode_digits_in_the_dialog_are_a_form_error(editor_client, digit):
    url = reverse("policy:restrictions-entry-add", args=["trusted"])
    response = editor_client.post(url, {"address": "10.0.0.0", "mask": digit})
    assert response.status_code == 400
    assert "is not a subnet mask" in " ".join(response.context["form"].errors["mask"])


@pytest.mark.parametrize("port", ["²5", "٢٥", "2٥"])
def test_unicode_digits_in_a_route_port_are_refused(api, editor_client, port):
    response = api.post(reverse("api:localdomain-list"), {"domain": "example.com", "route": f"mx.example.com:{port}"})
    assert response.status_code == 400
    assert response.json() == {
        "route": [f"next hop 'mx.example.com:{port}' has no valid port: use a number from 1 to 65535 (SMTP is 25)."]
    }
    page = editor_client.post(reverse("policy:domain-add"), {"domain": "example.com", "route": f"[::1]:{port}"})
    assert page.status_code == 200
    assert page.context["form"].errors["route"] == [
        f"next hop '[::1]:{port}' has no valid port: use a number from 1 to 65535 (SMTP is 25)."
    ]
    assert not LocalDomain.objects.exists()


def test_unicode_digits_in_a_csv_import_are_line_errors(editor_client):
    text = "network\n10.0.0.0/²\n10.1.0.0/٨\n10.2.0.0/16\n"
    file = SimpleUploadedFile("networks.csv", text.encode(), content_type="text/csv")
    response = editor_client.post(
        reverse("policy:network-import"), {"network_list": "trusted", "mode": "add", "file": file}
    )
    assert response.status_code == 302
    preview = editor_client.get(reverse("policy:network-import-preview"))
    errors = dict(preview.context["result"]["errors"])
    assert sorted(errors) == [2, 3]
    assert all("is not a subnet mask" in errors[line]["network"][0] for line in errors)


@pytest.mark.parametrize("value", ["fe80::1%lo", "fe80::1%25", "10.0.0.0/%d", "%(x)s"])
def test_a_percent_sign_in_contains_is_a_400_with_a_message(api, value):
    response = api.get(TRUSTED, {"contains": value})
    assert response.status_code == 400
    (message,) = response.json()["contains"]
    assert value.split("/")[-1] in message


def test_a_zone_in_contains_says_to_drop_it(api):
    response = api.get(reverse("api:deniednetwork-list"), {"contains": "fe80::1%lo"})
    assert response.json() == {
        "contains": ["fe80::1%lo has an IPv6 zone (%…); zones are local to one host, so enter the address without it."]
    }


@pytest.mark.parametrize("domain", ["example.com\r\nRSET", "example.com\nDATA", "exa\rmple.com", "a b.example"])
def test_a_selftest_domain_that_is_not_a_domain_is_refused(api, domain):
    response = api.post(reverse("api:selftestrun-list"), {"domain": domain})
    assert response.status_code == 400
    assert response.json()["detail"].startswith("Domain: ")
    assert not SelfTestRun.objects.exists()


def test_the_api_token_command_refuses_unicode_digits():
    from policy.management.commands.create_api_token import positive_days

    with pytest.raises(Exception, match="is not a number of days"):
        positive_days("²")
    assert positive_days("30") == 30
