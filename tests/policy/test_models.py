from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError
from django.utils import timezone

from policy.models import DeniedNetwork, InternalAddress, LocalDomain, RoutingRestrictions, SmtpUser, TrustedNetwork
from relayd.config import RESTRICTION_KEYS

pytestmark = pytest.mark.django_db


def saved(model, **fields):
    obj = model(**fields)
    obj.full_clean()
    obj.save()
    return obj


@pytest.mark.parametrize(
    ("text", "stored", "family", "start", "end"),
    [
        ("10.1.0.0/255.255.0.0", "10.1.0.0/16", 4, f"{0x0A010000:032x}", f"{0x0A01FFFF:032x}"),
        ("2001:DB8::/32", "2001:db8::/32", 6, "20010db8" + "0" * 24, "20010db8" + "f" * 24),
    ],
)
def test_networks_are_stored_normalised_with_a_sortable_range(text, stored, family, start, end):
    network = saved(TrustedNetwork, network=text)
    network.refresh_from_db()
    assert (network.network, network.family, network.range_start, network.range_end) == (stored, family, start, end)


def test_range_query_finds_containing_networks():
    saved(TrustedNetwork, network="10.0.0.0/8")
    saved(TrustedNetwork, network="10.1.0.0/16")
    saved(TrustedNetwork, network="192.0.2.0/24")
    probe = f"{0x0A010203:032x}"  # 10.1.2.3
    found = TrustedNetwork.objects.filter(family=4, range_start__lte=probe, range_end__gte=probe)
    assert sorted(found.values_list("network", flat=True)) == ["10.0.0.0/8", "10.1.0.0/16"]


def test_duplicate_network_is_refused_with_the_existing_entry_named():
    saved(TrustedNetwork, network="10.0.0.0/8", description="LAN")
    with pytest.raises(ValidationError) as caught:
        TrustedNetwork(network="10.0.0.0/255.0.0.0").full_clean()
    assert caught.value.message_dict["network"] == [
        "10.0.0.0/8 (LAN) is already in this list; edit that entry instead of adding it twice."
    ]


def test_database_refuses_a_duplicate_that_skipped_validation():
    TrustedNetwork.objects.create(network="10.0.0.0/8")
    with pytest.raises(IntegrityError):
        TrustedNetwork.objects.create(network="10.0.0.0/8")


def test_a_trusted_network_is_active_while_enabled_and_before_it_expires():
    now = timezone.now()
    never = TrustedNetwork.objects.create(network="10.0.0.0/8")
    later = TrustedNetwork.objects.create(network="10.1.0.0/16", expires_at=now + timedelta(seconds=1))
    at_now = TrustedNetwork.objects.create(network="10.2.0.0/16", expires_at=now)  # expiry is inclusive
    disabled = TrustedNetwork.objects.create(network="10.3.0.0/16", enabled=False)
    disabled_and_expired = TrustedNetwork.objects.create(network="10.4.0.0/16", enabled=False, expires_at=now)

    assert set(TrustedNetwork.objects.active(now)) == {never, later}
    assert set(TrustedNetwork.objects.inactive(now)) == {at_now, disabled, disabled_and_expired}
    assert set(TrustedNetwork.objects.expired(now)) == {at_now}  # a disabled entry is off, not expired
    assert [entry.is_active for entry in (never, at_now, disabled)] == [True, False, False]
    assert set(TrustedNetwork.objects.active(now + timedelta(seconds=1))) == {never}


def test_open_relay_range_needs_the_explicit_override():
    with pytest.raises(ValidationError, match="this makes the server an open relay"):
        TrustedNetwork(network="0.0.0.0/0").full_clean()
    assert saved(TrustedNetwork, network="0.0.0.0/0", open_relay_override=True).network == "0.0.0.0/0"


def test_denied_network_may_be_huge():
    assert saved(DeniedNetwork, network="::/0").network == "::/0"


def test_internal_address_is_one_address():
    assert saved(InternalAddress, address="::ffff:192.168.1.10").address == "192.168.1.10"
    with pytest.raises(ValidationError, match="is a network"):
        InternalAddress(address="192.168.1.0/24").full_clean()


def test_local_domain_is_normalised_and_unique():
    domain = saved(LocalDomain, domain="Bücher.Example.", route="Mail.Internal")
    assert (domain.domain, domain.route) == ("xn--bcher-kva.example", "mail.internal:25")
    with pytest.raises(ValidationError) as caught:
        LocalDomain(domain="BÜCHER.example").full_clean()
    assert caught.value.message_dict["domain"] == ["This domain is already a local domain."]


def test_routing_restrictions_is_a_singleton_with_safe_defaults():
    restrictions = RoutingRestrictions.load()
    assert (restrictions.pk, restrictions.allow_internal_addresses) == (1, False)
    RoutingRestrictions(allow_authenticated=False).save()
    assert RoutingRestrictions.objects.count() == 1
    assert RoutingRestrictions.load().allow_authenticated is False


def test_each_flag_is_a_field_and_a_key_relayd_reads():
    # The dashboard declares the checkboxes in FLAGS, relayd in its Restrictions dataclass: one list each side.
    assert RoutingRestrictions.FLAG_NAMES == RESTRICTION_KEYS
    for flag in RoutingRestrictions.FLAGS:
        field = RoutingRestrictions._meta.get_field(flag.name)
        assert (field.verbose_name, field.help_text, field.default) == (flag.label, flag.help_text, flag.default)


def test_smtp_password_is_stored_only_as_a_pbkdf2_hash():
    user = SmtpUser(username="Alice@Example.com")
    user.set_password("a long enough secret")
    user.full_clean()
    user.save()
    assert user.username == "alice@example.com"
    assert user.password_hash.startswith("pbkdf2_sha256$")
    assert "a long enough secret" not in user.password_hash
    assert user.check_password("a long enough secret")
    assert not user.check_password("wrong")


def test_smtp_user_needs_a_password_and_a_plain_username():
    with pytest.raises(ValidationError) as caught:
        SmtpUser(username="bad name").full_clean()
    assert "no spaces" in caught.value.message_dict["username"][0]
    assert "Set a password for this account." in caught.value.messages
