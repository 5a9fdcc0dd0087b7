"""Make the database enforce the policy of a snapshot again (used by rollback)."""

from datetime import datetime

from policy.models import DeniedNetwork, InternalAddress, LocalDomain, RoutingRestrictions, SmtpUser, TrustedNetwork


def restore_snapshot(snapshot: dict) -> None:
    """Change the policy so that it enforces exactly this snapshot.

    Entries the snapshot lacks are disabled where the model can be disabled (trusted networks,
    SMTP users), so that nothing an admin typed is lost; the other lists are made equal.
    Each write goes through save(), so every change is audited one by one.
    """
    restrictions = RoutingRestrictions.load()
    for name, value in snapshot["restrictions"].items():
        setattr(restrictions, name, value)
    restrictions.save()

    trusted = {entry["network"]: entry for entry in snapshot["trusted_networks"]}
    for network in TrustedNetwork.objects.all():
        entry = trusted.pop(network.network, None)
        if entry is not None:
            _update(network, description=entry["description"], expires_at=_moment(entry["expires_at"]), enabled=True)
        elif network.enabled and not network.is_expired:
            _update(network, enabled=False)
    for entry in trusted.values():
        TrustedNetwork.objects.create(
            network=entry["network"], description=entry["description"], expires_at=_moment(entry["expires_at"])
        )

    _make_equal(DeniedNetwork, "network", snapshot["denied_networks"], ("description",))
    _make_equal(InternalAddress, "address", snapshot["internal_addresses"], ("description",))
    _make_equal(LocalDomain, "domain", snapshot["local_domains"], ("include_subdomains", "route"))

    accounts = {entry["username"]: entry for entry in snapshot["smtp_users"]}
    for account in SmtpUser.objects.all():
        entry = accounts.pop(account.username, None)
        if entry is not None:
            _update(account, password_hash=entry["password_hash"], enabled=True)
        elif account.enabled:
            _update(account, enabled=False)
    for entry in accounts.values():
        SmtpUser.objects.create(username=entry["username"], password_hash=entry["password_hash"])


def _make_equal(model, key: str, entries: list[dict], fields: tuple[str, ...]) -> None:
    wanted = {entry[key]: entry for entry in entries}
    for obj in model.objects.all():
        entry = wanted.pop(getattr(obj, key), None)
        if entry is None:
            obj.delete()
        else:
            _update(obj, **_values(entry, fields))
    for entry in wanted.values():
        model.objects.create(**{key: entry[key]}, **_values(entry, fields))


def _values(entry: dict, fields: tuple[str, ...]) -> dict:
    # The snapshot writes "no route" as null; the model stores it as "".
    return {name: (entry[name] or "") if name == "route" else entry[name] for name in fields}


def _update(obj, **values) -> None:
    for name, value in values.items():
        setattr(obj, name, value)
    obj.save()  # the audit recorder skips it if nothing changed


def _moment(text: str | None):
    return datetime.fromisoformat(text) if text else None
