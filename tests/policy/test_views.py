"""Pages: login, roles, CSRF and the Routing Restrictions dialog's draft-then-OK flow."""

import pytest
from django.test import Client
from django.urls import reverse

from policy.models import DeniedNetwork, InternalAddress, LocalDomain, RoutingRestrictions, SmtpUser, TrustedNetwork
from policy.services import policy_summary
from tests.conftest import PASSWORD, make_user

pytestmark = pytest.mark.django_db

RESTRICTIONS = reverse("policy:restrictions")
PAGES = [
    reverse("policy:dashboard"),
    RESTRICTIONS,
    reverse("policy:domains"),
    reverse("policy:smtp-users"),
]
EDITOR_PAGES = [
    reverse("policy:restrictions-entry-add", args=["trusted"]),
    reverse("policy:domain-add"),
    reverse("policy:smtp-user-add"),
]
FLAGS_ON = {"allow_authenticated": "on", "allow_listed_ips": "on"}


def press(client, action, **fields):
    """Submit the dialog with one of its buttons; the checkboxes go along, as in the browser."""
    return client.post(RESTRICTIONS, {**FLAGS_ON, **fields, "action": action})


def add_entry(client, kind, **fields):
    return client.post(reverse("policy:restrictions-entry-add", args=[kind]), fields)


@pytest.mark.parametrize("url", PAGES + EDITOR_PAGES)
def test_anonymous_is_sent_to_login(client, url):
    response = client.get(url)
    assert response.status_code == 302
    assert response.url.startswith(reverse("login"))


def test_login_with_password_reaches_the_dashboard(client, editor):
    response = client.post(reverse("login"), {"username": "erin", "password": PASSWORD}, follow=True)
    assert response.redirect_chain[-1][0] == reverse("policy:dashboard")
    assert "Only authenticated clients" in response.content.decode()


def test_wrong_password_is_refused(client, editor):
    response = client.post(reverse("login"), {"username": "erin", "password": "nope"})
    assert response.status_code == 200
    assert "Please enter a correct username and password" in response.content.decode()


def test_user_without_a_role_gets_403(client):
    client.force_login(make_user("norole"))
    assert client.get(reverse("policy:dashboard")).status_code == 403


@pytest.mark.parametrize("url", PAGES)
def test_viewer_reads_every_page_without_edit_controls(viewer_client, url):
    response = viewer_client.get(url)
    assert response.status_code == 200
    body = response.content.decode()
    assert 'value="ok"' not in body
    assert "Add…" not in body
    assert "Add domain" not in body


@pytest.mark.parametrize("url", EDITOR_PAGES)
def test_viewer_gets_403_on_editor_pages(viewer_client, url):
    assert viewer_client.get(url).status_code == 403
    assert viewer_client.post(url, {"address": "10.0.0.0/8", "domain": "example.com"}).status_code == 403


def test_viewer_gets_403_posting_the_dialog(viewer_client):
    assert press(viewer_client, "add-localhost").status_code == 403
    assert press(viewer_client, "ok").status_code == 403
    assert not TrustedNetwork.objects.exists()


def test_viewer_cannot_delete(viewer_client, editor):
    domain = LocalDomain.objects.create(domain="example.com")
    assert viewer_client.post(reverse("policy:domain-delete", args=[domain.pk])).status_code == 403
    assert LocalDomain.objects.filter(pk=domain.pk).exists()


def test_csrf_is_enforced(editor):
    client = Client(enforce_csrf_checks=True)
    client.force_login(editor)
    assert client.post(RESTRICTIONS, {**FLAGS_ON, "action": "ok"}).status_code == 403
    assert client.post(reverse("policy:domain-add"), {"domain": "example.com"}).status_code == 403


def test_added_network_is_pending_until_ok(editor_client, editor):
    response = add_entry(
        editor_client, "trusted", address="10.1.0.0", mask="255.255.0.0", description="LAN", enabled="on"
    )
    assert response.status_code == 302
    page = editor_client.get(RESTRICTIONS).content.decode()
    assert "10.1.0.0/16" in page
    assert "not saved yet" in page
    assert not TrustedNetwork.objects.exists()

    press(editor_client, "ok")
    network = TrustedNetwork.objects.get()
    assert (network.network, network.description, network.created_by) == ("10.1.0.0/16", "LAN", editor)
    assert "not saved yet" not in editor_client.get(RESTRICTIONS).content.decode()


def test_cancel_asks_first_then_discards_the_draft(editor_client):
    add_entry(editor_client, "trusted", address="10.1.0.0/16")
    asked = press(editor_client, "cancel")
    assert asked.context["confirm_cancel"] is True
    assert "Discard 1 pending change?" in asked.content.decode()
    assert "10.1.0.0/16" in editor_client.get(RESTRICTIONS).content.decode()  # still pending
    press(editor_client, "keep")
    assert "10.1.0.0/16" in editor_client.get(RESTRICTIONS).content.decode()
    press(editor_client, "cancel", confirm_cancel="1")
    assert "10.1.0.0/16" not in editor_client.get(RESTRICTIONS).content.decode()
    assert not TrustedNetwork.objects.exists()


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        ({"address": "192.168.1.5", "mask": "255.255.255.0"}, "address", "Did you mean 192.168.1.0/24?"),
        ({"address": "10.0.0.0", "mask": "255.0.255.0"}, "mask", "1-bits must be contiguous"),
        ({"address": "192.168.1.256"}, "address", "octet 256 is out of range"),
        ({"address": "mail server"}, "address", "is not an IP address"),
        ({"address": "0.0.0.0/0"}, "address", "this makes the server an open relay"),
        ({"address": "::/0"}, "address", "this makes the server an open relay"),
    ],
)
def test_add_form_shows_field_errors(editor_client, fields, field, message):
    response = add_entry(editor_client, "trusted", **fields)
    assert response.status_code == 400
    assert message in " ".join(response.context["form"].errors[field])
    assert message in response.content.decode()


def test_duplicate_against_the_draft_is_refused(editor_client):
    TrustedNetwork.objects.create(network="10.0.0.0/8", description="LAN")
    response = add_entry(editor_client, "trusted", address="10.0.0.0", mask="8")
    assert "10.0.0.0/8 (LAN) is already in this list" in response.context["form"].errors["address"][0]
    add_entry(editor_client, "trusted", address="192.0.2.0/24")
    response = add_entry(editor_client, "trusted", address="192.0.2.0/255.255.255.0")
    assert "already in this list" in response.context["form"].errors["address"][0]


def test_covered_network_is_accepted_with_a_warning(editor_client):
    TrustedNetwork.objects.create(network="10.0.0.0/8", description="LAN")
    response = add_entry(editor_client, "trusted", address="10.1.0.0/16", enabled="on")
    assert response.status_code == 302
    messages = [str(m) for m in editor_client.get(RESTRICTIONS).context["messages"]]
    assert "10.1.0.0/16 is already covered by 10.0.0.0/8 (LAN)." in messages


def test_open_relay_override_is_explicit_and_ok_needs_the_word(editor_client):
    add_entry(editor_client, "trusted", address="0.0.0.0/0", open_relay_override="on", enabled="on")
    refused = press(editor_client, "ok")
    assert refused.status_code == 400
    assert [risk.code for risk in refused.context["dangers"]] == ["huge_range"]
    assert not TrustedNetwork.objects.exists()
    assert press(editor_client, "ok", confirm_word="yes").status_code == 400  # only the word the page asks for
    assert not TrustedNetwork.objects.exists()
    press(editor_client, "ok", confirm_word=" open  relay ")  # case and spacing are forgiven
    assert TrustedNetwork.objects.get().open_relay_override is True


def test_remove_then_ok_deletes(editor_client):
    network = TrustedNetwork.objects.create(network="10.0.0.0/8")
    press(editor_client, f"remove:trusted:{network.pk}")
    assert TrustedNetwork.objects.exists()
    press(editor_client, "ok")
    assert not TrustedNetwork.objects.exists()


def test_edit_changes_the_entry(editor_client):
    network = TrustedNetwork.objects.create(network="10.0.0.0/8", description="old")
    url = reverse("policy:restrictions-entry-edit", args=["trusted", network.pk])
    assert editor_client.get(url).context["form"].initial["address"] == "10.0.0.0/8"
    editor_client.post(url, {"address": "10.0.0.0/8", "description": "new", "enabled": "on"})
    press(editor_client, "ok")
    network.refresh_from_db()
    assert network.description == "new"


def test_add_localhost_adds_both_loopbacks_once(editor_client):
    press(editor_client, "add-localhost")
    press(editor_client, "add-localhost")
    press(editor_client, "ok")
    assert sorted(TrustedNetwork.objects.values_list("network", flat=True)) == ["127.0.0.1/32", "::1/128"]


def test_checkboxes_are_saved_on_ok_only(editor_client):
    editor_client.post(RESTRICTIONS, {"allow_internal_addresses": "on", "action": "add-localhost"})
    assert RoutingRestrictions.load().allow_internal_addresses is False
    editor_client.post(RESTRICTIONS, {"allow_internal_addresses": "on", "action": "ok"})
    restrictions = RoutingRestrictions.load()
    assert (restrictions.allow_authenticated, restrictions.allow_listed_ips) == (False, False)
    assert restrictions.allow_internal_addresses is True


def test_nothing_half_valid_is_saved(editor_client):
    """A draft that no longer validates (someone else added the same network) saves nothing at all."""
    add_entry(editor_client, "trusted", address="192.0.2.0/24")
    add_entry(editor_client, "denied", address="198.51.100.0/24")
    TrustedNetwork.objects.create(network="192.0.2.0/24")
    response = press(editor_client, "ok")
    assert response.status_code == 400
    assert "already in this list" in response.content.decode()
    assert not DeniedNetwork.objects.exists()
    assert TrustedNetwork.objects.count() == 1


def test_internal_address_and_denied_lists(editor_client):
    page = editor_client.get(RESTRICTIONS).content.decode()
    assert "solely connected to the internal network" in page
    assert "Hosts and clients that can NEVER route mail" in page
    add_entry(editor_client, "internal", address="192.168.1.10")
    response = add_entry(editor_client, "internal", address="192.168.1.0/24")
    assert "is a network" in response.context["form"].errors["address"][0]
    add_entry(editor_client, "denied", address="0.0.0.0/0")
    press(editor_client, "ok")
    assert InternalAddress.objects.get().address == "192.168.1.10"
    assert DeniedNetwork.objects.get().network == "0.0.0.0/0"


def test_unknown_list_is_404(editor_client):
    assert editor_client.get(reverse("policy:restrictions-entry-add", args=["bogus"])).status_code == 404
    assert press(editor_client, "add:bogus").status_code == 404


def test_dashboard_verdict_counts_active_networks(editor_client):
    for network in ("10.0.0.0/8", "192.168.0.0/16", "172.16.0.0/12"):
        TrustedNetwork.objects.create(network=network)
    TrustedNetwork.objects.create(network="192.0.2.0/24", enabled=False)
    body = editor_client.get(reverse("policy:dashboard")).content.decode()
    assert "Only 3 trusted networks and authenticated clients (no SMTP users yet) may relay." in body
    assert "(+1 disabled or expired)" in body


@pytest.mark.parametrize("flag", RoutingRestrictions.FLAG_NAMES)
def test_the_verdict_names_whom_each_checkbox_lets_relay(flag):
    # A new checkbox needs its words in PolicySummary.verdict, or the dashboard would say "Nobody may relay".
    TrustedNetwork.objects.create(network="10.0.0.0/8")
    InternalAddress.objects.create(address="192.168.1.10")
    RoutingRestrictions(**{name: name == flag for name in RoutingRestrictions.FLAG_NAMES}).save()
    assert policy_summary().verdict.startswith("Only ")


def test_dashboard_shows_each_checkbox_and_its_state(editor_client):
    RoutingRestrictions(allow_authenticated=False, allow_listed_ips=True, allow_internal_addresses=True).save()
    body = editor_client.get(reverse("policy:dashboard")).content.decode()
    assert '<li class="off">✘ Hosts and clients that successfully authenticate</li>' in body
    assert '<li class="on">✔ Hosts and clients with these IP addresses</li>' in body
    assert '<li class="on">✔ Hosts and clients connecting to these internal addresses</li>' in body


def test_domain_pages(editor_client):
    response = editor_client.post(reverse("policy:domain-add"), {"domain": "Bücher.Example", "route": "mx.internal"})
    assert response.status_code == 302
    domain = LocalDomain.objects.get()
    assert (domain.domain, domain.route) == ("xn--bcher-kva.example", "mx.internal:25")
    response = editor_client.post(reverse("policy:domain-add"), {"domain": "*.example.com"})
    assert "include subdomains" in response.context["form"].errors["domain"][0]
    editor_client.post(reverse("policy:domain-delete", args=[domain.pk]))
    assert not LocalDomain.objects.exists()


def test_smtp_user_pages_never_show_the_password(editor_client):
    add = reverse("policy:smtp-user-add")
    response = editor_client.post(add, {"username": "alice", "password1": "short", "password2": "short"})
    assert "at least 12 characters" in response.context["form"].errors["password1"][0]
    editor_client.post(
        add,
        {"username": "alice", "password1": "a long secret value", "password2": "a long secret value", "enabled": "on"},
    )
    account = SmtpUser.objects.get()
    assert account.check_password("a long secret value")
    edit = reverse("policy:smtp-user-edit", args=[account.pk])
    assert "pbkdf2" not in editor_client.get(edit).content.decode()
    editor_client.post(edit, {"username": "alice", "description": "kept", "enabled": "on"})
    account.refresh_from_db()
    assert account.description == "kept"
    assert account.check_password("a long secret value")


def test_expiry_from_the_form_is_saved_and_shown(editor_client):
    add_entry(editor_client, "trusted", address="192.0.2.0/24", enabled="on", expires_at="2020-01-01T12:00")
    add_entry(editor_client, "trusted", address="198.51.100.0/24", enabled="on", expires_at="2999-01-01T12:00")
    press(editor_client, "ok")
    expired = TrustedNetwork.objects.get(network="192.0.2.0/24")
    assert expired.is_expired
    assert not TrustedNetwork.objects.get(network="198.51.100.0/24").is_expired
    assert "expired" in editor_client.get(RESTRICTIONS).content.decode()
    body = editor_client.get(reverse("policy:dashboard")).content.decode()
    assert "Only 1 trusted network and" in body
    assert "(+1 disabled or expired)" in body
