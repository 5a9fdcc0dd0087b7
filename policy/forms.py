"""Forms for the policy pages. Address checks all come from `policy.addresses`."""

import netaddr
from django import forms
from django.core.exceptions import ValidationError

from policy import addresses
from policy.domains import normalise_domain
from policy.models import PROFILE_FIELDS, LocalDomain, RoutingRestrictions, SmtpUser, TrustedNetwork, validate_node_name
from policy.roles import can_edit
from policy.tester import Probe


class RestrictionsForm(forms.ModelForm):
    """The dialog's checkboxes."""

    class Meta:
        model = RoutingRestrictions
        fields = RoutingRestrictions.FLAG_NAMES


class ProfileFieldsMixin(forms.Form):
    """The "Limits…" section of an entry's Add/Edit form: its relay profile (issue 15)."""

    limit_names = PROFILE_FIELDS

    rate_limit_per_hour = forms.IntegerField(
        label="Messages per hour",
        min_value=1,
        required=False,
        help_text="Relay at most this many messages an hour; more are deferred (450 4.7.1). Empty: no limit.",
    )
    recipients_per_hour = forms.IntegerField(
        label="Recipients per hour",
        min_value=1,
        required=False,
        help_text="Relay to at most this many recipients an hour (450 4.7.1). Empty: no limit.",
    )
    allowed_sender_domains = forms.CharField(
        label="Allowed sender domains",
        required=False,
        max_length=5000,
        help_text="Relay only mail from these domains or their subdomains (553 5.7.1 otherwise), separated by "
        "spaces or commas, e.g. example.com. Empty: any sender.",
    )
    require_tls = forms.BooleanField(label="Relay only over TLS (STARTTLS)", required=False)
    owner = forms.CharField(label="Owner", max_length=200, required=False, help_text="Who to contact about it.")
    ticket = forms.CharField(label="Ticket", max_length=100, required=False, help_text="The change reference.")

    def clean_allowed_sender_domains(self):
        domains = []
        for name in self.cleaned_data["allowed_sender_domains"].replace(",", " ").split():
            domain = normalise_domain(name)  # its ValidationError names the bad domain
            if domain not in domains:
                domains.append(domain)
        return sorted(domains)

    @property
    def limits_open(self) -> bool:
        """Tell whether the section starts open: a limit is set or has an error."""
        return any(self[name].errors or self[name].value() not in (None, "", False, []) for name in self.limit_names)

    def profile_data(self) -> dict:
        return {name: self.cleaned_data[name] for name in self.limit_names}

    @staticmethod
    def domains_text(domains) -> str:
        return " ".join(domains) if isinstance(domains, list) else domains or ""


class ListEntryForm(forms.Form):
    """An entry of one of the dialog's address lists: its address, then its description.

    `listed` answers for the entries of the same list (the pending draft, not just the database:
    draft.DraftListing, or a plain list of entries), so that duplicates are refused and overlaps
    are warned about before anything is saved. It is asked about this one entry only.
    """

    field_order = ["address", "mask", "description"]

    description = forms.CharField(label="Description", max_length=200, required=False)

    def __init__(self, *args, listed=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.listed = addresses.as_listing(listed)
        self.warnings: list[str] = []


class NetworkEntryForm(ListEntryForm):
    """Add or edit a network as "IP address" plus "Subnet mask", as the dialog does, or as CIDR."""

    address = forms.CharField(
        label="IP address",
        max_length=100,
        help_text="A network (10.1.0.0 or 10.1.0.0/16), a single host (192.0.2.7) or IPv6 (2001:db8::/32).",
    )
    mask = forms.CharField(
        label="Subnet mask",
        max_length=45,
        required=False,
        help_text="e.g. 255.255.0.0 or 16. Leave empty for a single host or when the address has a /prefix.",
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.network = None

    def clean(self):
        cleaned = super().clean()
        if "address" not in cleaned or self.has_error("mask"):
            return cleaned
        try:
            network = addresses.parse_network(cleaned["address"], cleaned.get("mask", ""))
        except addresses.AddressError as exc:
            self.add_error(exc.field, exc)
            return cleaned
        duplicate = self.listed.duplicate(network)
        if duplicate:
            self.add_error(
                "address",
                ValidationError(addresses.duplicate_message(duplicate), code="duplicate"),
            )
            return cleaned
        self.check_network(network, cleaned)
        self.network = network
        if self.takes_effect(cleaned):
            self.warnings = addresses.overlap_warnings(network, self.listed.related(network))
        return cleaned

    def check_network(self, network, cleaned):
        """Refuse a network this list must not hold; subclasses add their own rules."""

    def takes_effect(self, cleaned) -> bool:
        """Tell whether the entry would take effect: one that does not warns of no overlap."""
        return True

    def entry_data(self) -> dict:
        """Return the entry as plain JSON-safe data for the pending draft."""
        return {
            "network": addresses.network_text(self.network),
            "description": self.cleaned_data["description"],
        }

    @classmethod
    def initial_from(cls, data: dict) -> dict:
        return {**data, "address": data["network"], "mask": ""}


class TrustedNetworkForm(ProfileFieldsMixin, NetworkEntryForm):
    enabled = forms.BooleanField(label="Enabled", required=False, initial=True)
    expires_at = forms.DateTimeField(
        label="Expires",
        required=False,
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
        help_text="Optional: stop trusting this network at this time (server time zone).",
    )
    open_relay_override = forms.BooleanField(
        label="I understand: trust this huge public range anyway (this makes the server an open relay)",
        required=False,
    )

    def check_network(self, network, cleaned):
        problem = addresses.open_relay_problem(network)
        if problem and not cleaned.get("open_relay_override"):
            self.add_error("address", ValidationError(problem, code="open_relay"))

    def takes_effect(self, cleaned) -> bool:
        return TrustedNetwork.takes_effect(bool(cleaned.get("enabled")), cleaned.get("expires_at"))

    def entry_data(self) -> dict:
        expires_at = self.cleaned_data["expires_at"]
        return {
            **super().entry_data(),
            "enabled": self.cleaned_data["enabled"],
            "expires_at": expires_at.isoformat() if expires_at else None,
            "open_relay_override": self.cleaned_data["open_relay_override"],
            **self.profile_data(),
        }

    @classmethod
    def initial_from(cls, data: dict) -> dict:
        initial = super().initial_from(data)
        return {**initial, "allowed_sender_domains": cls.domains_text(initial.get("allowed_sender_domains"))}


class DeniedNetworkForm(NetworkEntryForm):
    """The NEVER list. A broad range here is safe: it only refuses more clients."""


class InternalAddressForm(ListEntryForm):
    address = forms.CharField(
        label="IP address",
        max_length=100,
        help_text="An address of this server on the internal network card, e.g. 192.168.1.10.",
    )

    def clean_address(self):
        try:
            ip = addresses.parse_host(self.cleaned_data["address"])
        except addresses.AddressError as exc:
            raise ValidationError(exc.messages, code=exc.code) from None
        if self.listed.duplicate(netaddr.IPNetwork(ip)):
            raise ValidationError(f"{addresses.address_text(ip)} is already an internal address.", code="duplicate")
        return addresses.address_text(ip)

    def entry_data(self) -> dict:
        return {
            "address": self.cleaned_data["address"],
            "description": self.cleaned_data["description"],
        }

    @classmethod
    def initial_from(cls, data: dict) -> dict:
        return data


class LocalDomainForm(forms.ModelForm):
    class Meta:
        model = LocalDomain
        fields = ["domain", "include_subdomains", "route", "description"]


class SmtpUserForm(ProfileFieldsMixin, forms.ModelForm):
    """Create an SMTP account, or edit one; the password is only ever written, never shown."""

    password1 = forms.CharField(label="Password", widget=forms.PasswordInput, required=False, strip=False)
    password2 = forms.CharField(
        label="Password (again)",
        widget=forms.PasswordInput,
        required=False,
        strip=False,
    )

    class Meta:
        model = SmtpUser
        fields = ["username", "enabled", "description", *PROFILE_FIELDS]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.initial["allowed_sender_domains"] = self.domains_text(self.initial.get("allowed_sender_domains"))
        creating = self.instance.pk is None
        self.fields["password1"].required = creating
        self.fields["password2"].required = creating
        if not creating:
            self.fields["password1"].help_text = "Leave both empty to keep the current password."

    def clean(self):
        cleaned = super().clean()
        first, second = cleaned.get("password1"), cleaned.get("password2")
        if first or second:
            if first != second:
                self.add_error("password2", "The two passwords differ.")
            else:
                try:
                    SmtpUser.validate_password(first)
                except ValidationError as exc:
                    self.add_error("password1", exc)
                else:
                    self.instance.set_password(first)
        return cleaned


class ApiTokenForm(forms.Form):
    name = forms.CharField(label="Name", max_length=100, help_text="What uses this token, e.g. “ansible on ops1”.")
    read_only = forms.BooleanField(label="Read-only: this token can never change the policy", required=False)
    expires_in_days = forms.IntegerField(
        label="Expires after (days)",
        min_value=1,
        max_value=3650,
        required=False,
        help_text="Empty: never expires. Short-lived tokens limit the damage of a leaked key.",
    )
    node_token = forms.BooleanField(
        label="Node token: for a relayd node, which may only read relayd's export and report its status",
        required=False,
    )
    node = forms.CharField(
        label="Node name",
        max_length=100,
        required=False,
        validators=[validate_node_name],
        help_text="The name the node reports (relayd's --node-name); the token may report for this node only.",
    )

    def __init__(self, *args, user=None, **kwargs):
        super().__init__(*args, **kwargs)
        if user is not None and not can_edit(user):
            # relayd's export holds the SMTP password hashes: only editors may make node tokens.
            del self.fields["node_token"], self.fields["node"]

    def clean(self):
        data = super().clean()
        wants_node = data.pop("node_token", False)
        node = data.get("node", "")
        if wants_node and not node and "node" not in self.errors:
            self.add_error("node", "Give the name of the relayd node this token is for.")
        elif node and not wants_node:
            self.add_error("node_token", "Tick “Node token” to make a node token, or leave the node name empty.")
        return data


class NetworkImportForm(forms.Form):
    """Upload a CSV file of networks for a preview; nothing is saved before the preview is confirmed."""

    MAX_BYTES = 10 * 1024 * 1024

    network_list = forms.ChoiceField(label="List", choices=[])
    mode = forms.ChoiceField(
        label="Mode",
        widget=forms.RadioSelect,
        initial="add",
        choices=[
            ("add", "Add these networks to the list"),
            ("replace", "Replace the whole list with these networks (entries not in the file are removed)"),
        ],
    )
    file = forms.FileField(label="CSV file", help_text="UTF-8, first line: the column names. Export a list to see one.")

    def __init__(self, *args, lists=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["network_list"].choices = [(item.name, item.title) for item in lists]

    def clean_file(self):
        upload = self.cleaned_data["file"]
        if upload.size > self.MAX_BYTES:
            raise ValidationError("The file is larger than 10 MB; split it, or use the API's bulk endpoint.")
        return upload


class CheckForm(forms.Form):
    """The "would this relay?" question, in the words of the API: client, local_address, authenticated, recipient."""

    client = forms.CharField(
        label="Client address", max_length=100, help_text="The IP address the client connects from."
    )
    local_address = forms.CharField(
        label="Local address",
        max_length=100,
        required=False,
        help_text="Optional: the address of this server the client connects to (for internal addresses).",
    )
    authenticated = forms.BooleanField(label="The client authenticated (SMTP AUTH)", required=False)
    recipient = forms.CharField(label="Recipient", max_length=320, help_text="e.g. someone@example.net")

    def clean_client(self):
        return _address_field(self.cleaned_data["client"])

    def clean_local_address(self):
        value = self.cleaned_data["local_address"]
        return _address_field(value) if value.strip() else None

    def probe(self) -> Probe:
        return Probe(**self.cleaned_data)


def _address_field(text: str) -> str:
    try:
        return addresses.address_text(addresses.parse_address(text))
    except addresses.AddressError as exc:
        raise ValidationError(exc.messages, code=exc.code) from None
