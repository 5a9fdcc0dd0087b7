"""List, get, create, update and delete on every model endpoint, each with its audit row."""

import functools

import pytest
from django.contrib.auth.hashers import make_password

from policy.models import DeniedNetwork, InternalAddress, LocalDomain, SmtpUser, TrustedNetwork
from tests.api.base import APITestBase

pytestmark = pytest.mark.django_db


@functools.cache
def printer_password_hash() -> str:
    return make_password("the first long secret", hasher="pbkdf2_sha256")


class TestTrustedNetworks(APITestBase):
    basename = "trustednetwork"
    model = TrustedNetwork
    create_data = {"network": "10.0.0.0/255.0.0.0", "description": "LAN", "expires_at": "2030-01-01T00:00:00Z"}
    created = {"network": "10.0.0.0/8", "family": 4, "enabled": True, "open_relay_override": False, "warnings": []}
    update_data = {"description": "Head office", "enabled": False}

    def make(self):
        return TrustedNetwork.objects.create(network="192.0.2.0/24")


class TestDeniedNetworks(APITestBase):
    basename = "deniednetwork"
    model = DeniedNetwork
    create_data = {"network": "2001:DB8:0:0::/64", "description": "lab"}
    created = {"network": "2001:db8::/64", "family": 6}
    update_data = {"network": "2001:db8:1::/48"}

    def make(self):
        return DeniedNetwork.objects.create(network="198.51.100.0/24")


class TestInternalAddresses(APITestBase):
    basename = "internaladdress"
    model = InternalAddress
    create_data = {"address": "::ffff:192.168.1.10", "description": "eth1"}
    created = {"address": "192.168.1.10"}
    update_data = {"address": "fe80::1"}

    def make(self):
        return InternalAddress.objects.create(address="192.168.1.1")


class TestLocalDomains(APITestBase):
    basename = "localdomain"
    model = LocalDomain
    create_data = {"domain": "Example.COM.", "route": "mail.internal", "include_subdomains": True}
    created = {"domain": "example.com", "route": "mail.internal:25"}
    update_data = {"route": "[2001:db8::25]"}
    updated = {"route": "[2001:db8::25]:25"}

    def make(self):
        return LocalDomain.objects.create(domain="example.org")


class TestSmtpUsers(APITestBase):
    basename = "smtpuser"
    model = SmtpUser
    create_data = {"username": "Alice@Example.com", "password": "a long enough secret"}
    created = {"username": "alice@example.com", "enabled": True}
    update_data = {"password": "another long secret", "description": "printer"}
    write_only = ("password",)

    def make(self):
        # PBKDF2 is slow by design; hash once and reuse it, since the matrix makes hundreds of accounts.
        account = SmtpUser(username="printer", password_hash=printer_password_hash())
        account.save()
        return account

    def test_password_is_stored_as_a_hash(self, api):
        api.post(self.list_url, self.create_data)
        account = SmtpUser.objects.get()
        assert account.password_hash.startswith("pbkdf2_sha256$")
        assert account.check_password(self.create_data["password"])

    def test_update_without_password_keeps_it(self, api):
        account = self.make()
        assert api.patch(self.detail_url(account), {"enabled": False}).status_code == 200
        account.refresh_from_db()
        assert account.check_password("the first long secret")
