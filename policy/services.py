"""Policy operations, so that views, the API and commands change the policy the same way."""

from dataclasses import dataclass
from datetime import datetime

from django.core.exceptions import ObjectDoesNotExist, ValidationError
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from policy.draft import FLAGS, LIST_KINDS, Draft
from policy.models import (
    DeniedNetwork,
    InternalAddress,
    LocalDomain,
    RoutingRestrictions,
    SmtpUser,
    TrustedNetwork,
)


def apply_routing_draft(draft: Draft, user) -> None:
    """Save the dialog's pending changes in one transaction; on any error save nothing.

    Removals go first so that an entry can be removed and re-added in one draft. Every row
    is validated again against the database, because another admin may have changed it
    since the draft was made.
    """
    with transaction.atomic():
        if draft.flags is not None:
            restrictions = RoutingRestrictions.load()
            for name in FLAGS:
                setattr(restrictions, name, draft.flags[name])
            restrictions.full_clean()
            restrictions.save()
        for kind, changes in draft.lists.items():
            _apply_list_changes(LIST_KINDS[kind], changes, user)


def _apply_list_changes(kind, changes: dict, user) -> None:
    model = kind.model
    for key in changes["removed"]:
        model.objects.filter(pk=int(key)).delete()
    for key, data in changes["changed"].items():
        try:
            obj = model.objects.select_for_update().get(pk=int(key))
        except ObjectDoesNotExist:
            raise ValidationError(
                f"{data.get('network') or data.get('address')} was removed by someone else meanwhile."
            ) from None
        _save_entry(obj, data)
    for data in changes["added"].values():
        _save_entry(model(created_by=user), data)


def _save_entry(obj, data: dict) -> None:
    for name, value in data.items():
        if name == "expires_at" and value:
            value = datetime.fromisoformat(value)
        setattr(obj, name, value)
    try:
        # clean() reports duplicates in its own words; the unique constraint still guards races.
        obj.full_clean(validate_unique=False)
    except ValidationError as exc:
        # Name the entry: the page shows these errors above the whole dialog, not beside a field.
        raise ValidationError([f"{obj}: {message}" for message in exc.messages]) from None
    obj.save()


@dataclass(frozen=True)
class PolicySummary:
    """The policy at a glance, for the dashboard."""

    restrictions: RoutingRestrictions
    trusted_active: int
    trusted_inactive: int
    internal_addresses: int
    denied_networks: int
    local_domains: int
    smtp_users: int

    @property
    def verdict(self) -> str:
        """Say in plain words who may relay mail to any domain."""
        r = self.restrictions
        who = []
        if r.allow_listed_ips and self.trusted_active:
            who.append(_plural(self.trusted_active, "trusted network"))
        if r.allow_authenticated:
            who.append("authenticated clients" if self.smtp_users else "authenticated clients (no SMTP users yet)")
        if r.allow_internal_addresses and self.internal_addresses:
            who.append(f"clients connecting to {_plural(self.internal_addresses, 'internal address', 'es')}")
        if self.local_domains:
            others = f"may deliver only to the {_plural(self.local_domains, 'local domain')}"
        else:
            others = "may deliver nothing: there are no local domains yet"
        if not who:
            return f"Nobody may relay. Everyone {others}."
        sentence = f"Only {_join(who)} may relay. Everyone else {others}."
        if self.denied_networks:
            sentence += f" Clients in {_plural(self.denied_networks, 'denied network')} never may relay."
        return sentence


def policy_summary() -> PolicySummary:
    now = timezone.now()
    active = TrustedNetwork.objects.filter(enabled=True).filter(Q(expires_at__isnull=True) | Q(expires_at__gt=now))
    return PolicySummary(
        restrictions=RoutingRestrictions.load(),
        trusted_active=active.count(),
        trusted_inactive=TrustedNetwork.objects.count() - active.count(),
        internal_addresses=InternalAddress.objects.count(),
        denied_networks=DeniedNetwork.objects.count(),
        local_domains=LocalDomain.objects.count(),
        smtp_users=SmtpUser.objects.filter(enabled=True).count(),
    )


def _plural(count: int, noun: str, suffix: str = "s") -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}{suffix}"


def _join(parts: list[str]) -> str:
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
