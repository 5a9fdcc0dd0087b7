"""Forms of the Reputation page: an address to watch and a DNS blocklist."""

from django import forms
from django.core.exceptions import ValidationError
from django.db import models

from policy import dnsbl
from policy.addresses import AddressError, parse_public_address
from policy.models import Blocklist, WatchedAddress


class WatchedAddressForm(forms.ModelForm):
    """One public sending address, validated by the dialog's parser."""

    # Text, not Django's IP field: the project's parser gives the messages that suggest the fix.
    address = forms.CharField(
        label="Address",
        max_length=100,
        help_text="A public address this server sends mail from, IPv4 or IPv6.",
    )

    class Meta:
        model = WatchedAddress
        fields = ["address", "description"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["address"].widget.attrs["list"] = "node-addresses"  # relayd nodes' addresses, if any

    def clean_address(self):
        try:
            return str(parse_public_address(self.cleaned_data["address"]))
        except AddressError as exc:
            raise ValidationError(exc.messages, code=exc.code) from None


def _https_by_default(field, **kwargs):
    # A delisting page typed without a scheme is an https page (Django 6's default, asked for now).
    if isinstance(field, models.URLField):
        kwargs["assume_scheme"] = "https"
    return field.formfield(**kwargs)


class BlocklistForm(forms.ModelForm):
    """A DNSBL zone with its delisting page and usage terms."""

    class Meta:
        model = Blocklist
        fields = ["zone", "delist_url", "notes", "enabled", "ipv6"]
        widgets = {"notes": forms.Textarea(attrs={"rows": 4})}
        formfield_callback = _https_by_default

    def clean_zone(self):
        try:
            return dnsbl.normalise_zone(self.cleaned_data["zone"])
        except dnsbl.ZoneError as exc:
            raise ValidationError(str(exc), code="invalid_zone") from None
