"""Make the database hold exactly the policy of a revision again (used by rollback)."""

from datetime import datetime

from policy import addresses
from policy.models import (
    PROFILE_FIELDS,
    DeniedNetwork,
    InternalAddress,
    LocalDomain,
    RoutingRestrictions,
    SmtpUser,
    TrustedNetwork,
    empty_profile,
)


def inactive_state() -> dict:
    """Return what a snapshot leaves out but a rollback must bring back: the entries that take no effect.

    That is disabled or expired trusted networks (with their override) and disabled SMTP users.
    """
    return {
        "trusted_networks": [
            {
                "network": network.network,
                "description": network.description,
                "enabled": network.enabled,
                "expires_at": network.expires_at.isoformat() if network.expires_at else None,
                "open_relay_override": network.open_relay_override,
                "profile": network.profile(),
            }
            for network in TrustedNetwork.objects.inactive()
        ],
        "smtp_users": [
            {"username": account.username, "password_hash": account.password_hash, "profile": account.profile()}
            for account in SmtpUser.objects.filter(enabled=False)
        ],
    }


def restore_snapshot(snapshot: dict, inactive: dict | None = None) -> None:
    """Change the policy so that it is exactly this snapshot plus these inactive entries.

    Entries in neither are deleted: a rollback past an added 0.0.0.0/0 leaves nothing of it
    behind (its audit entries keep what it was). `inactive` is None for revisions recorded
    before it was kept; then only the enforced policy is restored. Each write goes through
    save() or delete(), so every change is audited one by one.
    """
    inactive = inactive or {"trusted_networks": [], "smtp_users": []}
    restrictions = RoutingRestrictions.load()
    for name, value in snapshot["restrictions"].items():
        setattr(restrictions, name, value)
    restrictions.save()

    # Revisions recorded before the canonical text (issue 10) may spell an entry otherwise.
    snapshot = {
        **snapshot,
        "trusted_networks": [_canonical(entry, "network") for entry in snapshot["trusted_networks"]],
        "denied_networks": [_canonical(entry, "network") for entry in snapshot["denied_networks"]],
        "internal_addresses": [_canonical(entry, "address") for entry in snapshot["internal_addresses"]],
    }
    inactive = {
        **inactive,
        "trusted_networks": [_canonical(entry, "network") for entry in inactive["trusted_networks"]],
    }
    # Profiles (schema 2) are listed apart, by network id and username; an entry without one has none.
    profiles = snapshot.get("profiles", {})
    network_profiles = {entry["id"]: _profile(entry) for entry in profiles.get("trusted_networks", [])}
    user_profiles = {entry["username"]: _profile(entry) for entry in profiles.get("smtp_users", [])}
    trusted = {
        entry["network"]: {
            "description": entry["description"],
            "enabled": True,
            "expires_at": _moment(entry["expires_at"]),
            # A published entry that needs the override had it; no other entry needs it.
            "open_relay_override": addresses.open_relay_problem(addresses.parse_network(entry["network"])) is not None,
            **network_profiles.get(entry["id"], empty_profile()),
        }
        for entry in snapshot["trusted_networks"]
    }
    for entry in inactive["trusted_networks"]:
        trusted[entry["network"]] = {
            "description": entry["description"],
            "enabled": entry["enabled"],
            "expires_at": _moment(entry["expires_at"]),
            "open_relay_override": entry["open_relay_override"],
            **entry.get("profile", empty_profile()),
        }
    _make_equal_by(TrustedNetwork, "network", trusted)

    accounts = {
        entry["username"]: {
            "password_hash": entry["password_hash"],
            "enabled": True,
            **user_profiles.get(entry["username"], empty_profile()),
        }
        for entry in snapshot["smtp_users"]
    }
    for entry in inactive["smtp_users"]:
        accounts[entry["username"]] = {
            "password_hash": entry["password_hash"],
            "enabled": False,
            **entry.get("profile", empty_profile()),
        }
    _make_equal_by(SmtpUser, "username", accounts)

    _make_equal(DeniedNetwork, "network", snapshot["denied_networks"], ("description",))
    _make_equal(InternalAddress, "address", snapshot["internal_addresses"], ("description",))
    _make_equal(LocalDomain, "domain", snapshot["local_domains"], ("include_subdomains", "route"))


def _profile(entry: dict) -> dict:
    return {name: entry[name] for name in PROFILE_FIELDS}


def _canonical(entry: dict, key: str) -> dict:
    if key == "address":
        return {**entry, key: addresses.address_text(addresses.parse_host(entry[key]))}
    return {**entry, key: addresses.network_text(addresses.parse_network(entry[key]))}


def _make_equal(model, key: str, entries: list[dict], fields: tuple[str, ...]) -> None:
    _make_equal_by(model, key, {entry[key]: _values(entry, fields) for entry in entries})


def _make_equal_by(model, key: str, wanted: dict[str, dict]) -> None:
    """Make the table hold exactly these rows (key -> field values): update, delete and create."""
    wanted = dict(wanted)
    for obj in model.objects.all():
        values = wanted.pop(getattr(obj, key), None)
        if values is None:
            obj.delete()
        else:
            _update(obj, **values)
    for name, values in wanted.items():
        model.objects.create(**{key: name}, **values)


def _values(entry: dict, fields: tuple[str, ...]) -> dict:
    # The snapshot writes "no route" as null; the model stores it as "".
    return {name: (entry[name] or "") if name == "route" else entry[name] for name in fields}


def _update(obj, **values) -> None:
    for name, value in values.items():
        setattr(obj, name, value)
    obj.save()  # the audit recorder skips it if nothing changed


def _moment(text: str | None):
    return datetime.fromisoformat(text) if text else None
