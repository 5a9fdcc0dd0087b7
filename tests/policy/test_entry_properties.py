"""Property: every entry the dialog, the API or CSV import accepts makes a snapshot relayd accepts (issue 10).

Each example adds a few generated entries through one of the real entry paths, then builds the
snapshot as publishing does and loads it with relayd's own validator. Each example runs in a
transaction that is rolled back, so examples do not see each other's entries.
"""

import csv
import io

import pytest
from django.contrib.auth.hashers import PBKDF2PasswordHasher
from django.core.exceptions import ValidationError
from django.db import transaction
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from policy import network_csv, services
from policy.draft import LIST_KINDS, Draft
from policy.forms import LocalDomainForm, SmtpUserForm
from policy.models import DeniedNetwork, InternalAddress, LocalDomain, PolicyRevision, SmtpUser, TrustedNetwork
from policy.snapshot import build_snapshot, dumps
from relayd.config import parse_snapshot
from relayd.matcher import parse_host_address, parse_network
from tests.api.conftest import issue_token, token_client
from tests.strategies import (
    DESCRIPTIONS,
    EXPIRY,
    PASSWORDS,
    USERNAMES,
    domain_input,
    host_input,
    network_input,
    profile_input,
    route_input,
)

pytestmark = pytest.mark.django_db

PROPERTY = settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)
REFUSED_BY_RELAYD = "relayd would refuse"


@pytest.fixture(autouse=True)
def fast_smtp_password_hashes(monkeypatch):
    """Hash SMTP passwords with 1,000 PBKDF2 iterations, not a million: relayd takes any count."""
    monkeypatch.setattr(PBKDF2PasswordHasher, "iterations", 1000)


@st.composite
def network_entry(draw) -> dict:
    address, mask = draw(network_input())
    entry = {"address": address, "mask": mask, "description": draw(DESCRIPTIONS)}
    entry["list"] = draw(st.sampled_from(["trusted", "denied"]))
    if entry["list"] == "trusted":
        entry["enabled"] = draw(st.booleans())
        entry["open_relay_override"] = draw(st.booleans())
        entry["expires_at"] = draw(EXPIRY)
        entry["profile"] = draw(profile_input())
    return entry


ENTRIES = st.lists(
    st.one_of(
        st.tuples(st.sampled_from(["api", "dialog", "csv"]), network_entry()),
        st.tuples(st.sampled_from(["api", "dialog"]), st.fixed_dictionaries({"internal": host_input()})),
        st.tuples(
            st.sampled_from(["api", "form"]),
            st.fixed_dictionaries(
                {"domain": domain_input(), "route": route_input(), "include_subdomains": st.booleans()}
            ),
        ),
        st.tuples(
            st.sampled_from(["api", "form"]),
            st.fixed_dictionaries(
                {"username": USERNAMES, "password": PASSWORDS, "enabled": st.booleans(), "profile": profile_input()}
            ),
        ),
    ),
    min_size=1,
    max_size=5,
)


def _network_text(entry: dict) -> str:
    return f"{entry['address']}/{entry['mask']}" if entry["mask"] else entry["address"]


def _api_network(api, entry: dict):
    body = {"network": _network_text(entry), "description": entry["description"]}
    for name in ("enabled", "open_relay_override"):
        if name in entry:
            body[name] = entry[name]
    body["confirm_open_relay"] = entry.get("open_relay_override", False)  # the override, confirmed (issue 13)
    if entry.get("expires_at"):
        body["expires_at"] = entry["expires_at"].isoformat()
    body.update(entry.get("profile", {}))
    return api.post(f"/api/v1/{entry['list']}-networks/", body, format="json")


def _dialog(kind: str, data: dict, user) -> bool:
    """Add one entry through the dialog's form and press OK; return whether it was saved."""
    draft = Draft()
    form = LIST_KINDS[kind].form(data, listed=draft.listing(kind))
    if not form.is_valid():
        return False
    draft.add(kind, form.entry_data())
    try:
        services.apply_routing_draft(draft, user)
    except ValidationError as exc:  # a duplicate of an earlier entry, say
        assert REFUSED_BY_RELAYD not in str(exc)
        return False
    return True


def _csv_import(entry: dict, user) -> None:
    target = network_csv.LISTS[entry["list"]]
    out = io.StringIO()
    writer = csv.writer(out)
    columns = ["network", "description"]
    row = [_network_text(entry), entry["description"]]
    if entry["list"] == "trusted":
        columns += ["enabled", "open_relay_override", *entry["profile"]]
        row += [str(entry["enabled"]).lower(), str(entry["open_relay_override"]).lower()]
        row += [_cell(value) for value in entry["profile"].values()]
    writer.writerow(columns)
    writer.writerow(row)
    parsed = network_csv.read(out.getvalue(), target)
    services.import_networks(target.model, parsed.rows, row_errors=parsed.errors, user=user)


def _cell(value) -> str:
    """Write a profile value as a CSV cell, as the export does."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    return " ".join(value) if isinstance(value, list) else str(value)


def _form_profile(profile: dict) -> dict:
    """Return profile fields as the "Limits…" section posts them."""
    return {name: _cell(value) for name, value in profile.items() if value is not False}


def _add(path: str, entry: dict, api, user) -> None:
    if "address" in entry:
        if path == "api":
            response = _api_network(api, entry)
            assert response.status_code in (201, 400), response.content
            assert REFUSED_BY_RELAYD not in response.content.decode()
        elif path == "csv":
            _csv_import(entry, user)
        else:
            data = {key: value for key, value in entry.items() if key not in ("list", "profile") and value is not None}
            data.update(_form_profile(entry.get("profile", {})))
            data["expires_at"] = entry["expires_at"].strftime("%Y-%m-%dT%H:%M") if entry.get("expires_at") else ""
            _dialog(entry["list"], data, user)
    elif "internal" in entry:
        if path == "api":
            response = api.post("/api/v1/internal-addresses/", {"address": entry["internal"]}, format="json")
            assert response.status_code in (201, 400), response.content
            assert REFUSED_BY_RELAYD not in response.content.decode()
        else:
            _dialog("internal", {"address": entry["internal"], "description": ""}, user)
    elif "domain" in entry:
        if path == "api":
            response = api.post("/api/v1/domains/", entry, format="json")
            assert response.status_code in (201, 400), response.content
            assert REFUSED_BY_RELAYD not in response.content.decode()
        else:
            form = LocalDomainForm({**entry, "include_subdomains": entry["include_subdomains"] or ""})
            if form.is_valid():
                form.save()
    else:
        if path == "api":
            response = api.post("/api/v1/smtp-users/", entry, format="json")
            assert response.status_code in (201, 400), response.content
            assert REFUSED_BY_RELAYD not in response.content.decode()
        else:
            data = {**entry, "password1": entry["password"], "password2": entry["password"]}
            data.update(_form_profile(data.pop("profile")))
            form = SmtpUserForm({key: value for key, value in data.items() if value is not False})
            if form.is_valid():
                form.save()


def _saved() -> int:
    return sum(
        model.objects.count() for model in (TrustedNetwork, DeniedNetwork, InternalAddress, LocalDomain, SmtpUser)
    )


@PROPERTY
@given(entries=ENTRIES)
def test_every_accepted_entry_makes_a_snapshot_relayd_accepts(editor, entries):
    with transaction.atomic():
        api = token_client(issue_token(editor, name="property"))
        for path, entry in entries:
            _add(path, entry, api, editor)
        # What publishing would write now, checked by relayd's own loader.
        snapshot = parse_snapshot(dumps(build_snapshot(serial=PolicyRevision.objects.count() + 1)))
        for revision in PolicyRevision.objects.all():
            parse_snapshot(revision.snapshot)
        # Stored == what relayd requires: relayd's parsers refuse any other spelling.
        for model in (TrustedNetwork, DeniedNetwork):
            for text in model.objects.values_list("network", flat=True):
                assert parse_network(text).text == text
        for text in InternalAddress.objects.values_list("address", flat=True):
            parse_host_address(text)
        assert len(snapshot.trusted_networks) <= TrustedNetwork.objects.count()
        # Every enforced entry with a profile carries it to relayd, exactly (issue 15).
        profiled = {network.pk: network.profile() for network in TrustedNetwork.objects.all() if network.has_profile}
        for network_id, profile in snapshot.profiles.trusted_networks.items():
            assert profile._asdict() == {
                **profiled[network_id],
                "allowed_sender_domains": profile.allowed_sender_domains,
            }
            assert list(profile.allowed_sender_domains) == profiled[network_id]["allowed_sender_domains"]
        if snapshot.profiles.trusted_networks or snapshot.profiles.smtp_users:
            event("with profiles")
        event(f"{len(entries)} entries, {_saved()} saved")
        transaction.set_rollback(True)
