"""The relay policy, as Exchange's Routing Restrictions dialog laid it out."""

import hashlib
import hmac
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import netaddr
from django.conf import settings
from django.contrib.auth.hashers import check_password, make_password
from django.core.exceptions import NON_FIELD_ERRORS, PermissionDenied, ValidationError
from django.core.validators import MinValueValidator
from django.db import models
from django.utils import timezone
from django.utils.functional import cached_property

from policy import addresses
from policy.domains import normalise_domain, normalise_route
from relayd.compact import read_snapshot

# relayd verifies SMTP passwords without Django, so the hash format is fixed to one it knows.
SMTP_PASSWORD_HASHER = "pbkdf2_sha256"  # noqa: S105 (a hasher name, not a password)
SMTP_PASSWORD_MIN_LENGTH = 12


class TrackedModel(models.Model):
    """Timestamps and the user who created the row."""

    created_at = models.DateTimeField("created", auto_now_add=True)
    updated_at = models.DateTimeField("updated", auto_now=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name="created by",
        null=True,
        blank=True,
        editable=False,
        on_delete=models.SET_NULL,
        related_name="+",
    )

    class Meta:
        abstract = True


# The profile's fields, one declaration for the snapshot builder, restore and the exports (issue 15).
PROFILE_FIELDS = (
    "rate_limit_per_hour",
    "recipients_per_hour",
    "allowed_sender_domains",
    "require_tls",
    "owner",
    "ticket",
)


def empty_profile() -> dict:
    """Return the profile of an entry with no limits set."""
    return {
        "rate_limit_per_hour": None,
        "recipients_per_hour": None,
        "allowed_sender_domains": [],
        "require_tls": False,
        "owner": "",
        "ticket": "",
    }


def profile_of(values: Mapping[str, Any]) -> dict | None:
    """Return the profile among values (an entry's fields, or a row of them), or None when it sets no limit."""
    profile = {name: values[name] for name in PROFILE_FIELDS}
    return None if profile == empty_profile() else profile


class RelayProfile(models.Model):
    """Limits on what a trusted network or SMTP user may relay (docs/design.md item 6).

    A profile only narrows the grant it belongs to: it never lets anyone relay who could not
    before, and it never limits delivery to local domains.
    """

    rate_limit_per_hour = models.PositiveIntegerField(
        "messages per hour",
        null=True,
        blank=True,
        validators=[MinValueValidator(1)],
        help_text="Relay at most this many messages an hour (450 4.7.1 beyond it). Empty: no limit.",
    )
    recipients_per_hour = models.PositiveIntegerField(
        "recipients per hour",
        null=True,
        blank=True,
        validators=[MinValueValidator(1)],
        help_text="Relay to at most this many recipients an hour (450 4.7.1 beyond it). Empty: no limit.",
    )
    allowed_sender_domains = models.JSONField(
        "allowed sender domains",
        default=list,
        blank=True,
        help_text="Relay only mail whose MAIL FROM is in one of these domains or their subdomains "
        "(553 5.7.1 otherwise). Empty: any sender.",
    )
    require_tls = models.BooleanField(
        "require TLS", default=False, help_text="Relay only in a session that used STARTTLS."
    )
    owner = models.CharField("owner", max_length=200, blank=True, help_text="Who to contact about it.")
    ticket = models.CharField("ticket", max_length=100, blank=True, help_text="The change reference.")

    class Meta:
        abstract = True

    def clean_profile(self) -> None:
        """Normalise the sender domains; raise ValidationError naming the field if one is invalid."""
        domains = self.allowed_sender_domains
        if domains in (None, ""):
            domains = []
        if isinstance(domains, str):
            domains = domains.replace(",", " ").split()
        if not isinstance(domains, list) or not all(isinstance(domain, str) for domain in domains):
            raise ValidationError({"allowed_sender_domains": "Enter a list of domain names."}, code="invalid")
        normalised = []
        for domain in domains:
            try:
                domain = normalise_domain(domain)
            except ValidationError as exc:
                raise ValidationError({"allowed_sender_domains": exc.messages}, code="invalid") from None
            if domain not in normalised:
                normalised.append(domain)
        self.allowed_sender_domains = sorted(normalised)

    def profile(self) -> dict:
        """Return the profile's fields as the snapshot writes them."""
        return {name: getattr(self, name) for name in PROFILE_FIELDS}

    @property
    def has_profile(self) -> bool:
        return profile_of(self.profile()) is not None


@dataclass(frozen=True)
class Flag:
    """One checkbox of the Routing Restrictions dialog.

    Its name is the model field, the API field and the snapshot key alike, and relayd's
    `Restrictions` has a field of the same name (a test holds the two lists equal).
    """

    name: str
    label: str  # as the dialog and the dashboard show it, after "The following hosts and clients can route mail"
    help_text: str
    default: bool  # the safe setting before anyone has saved the restrictions
    relayers: str  # who may relay while it is on, in a few words, for a revision's summary

    def field(self) -> models.BooleanField:
        return models.BooleanField(self.label, default=self.default, help_text=self.help_text)


class RoutingRestrictions(TrackedModel):
    """The dialog's checkboxes: who may relay mail to any domain. There is exactly one row.

    Each flag of FLAGS is a boolean field of its name (added below the class); the form, the API,
    the snapshot, the dashboard and the revision page read this list. What a flag means lives in
    relayd (its Restrictions field and decide()), the MTA export renderers and the dashboard's
    verdict (services.PolicySummary); tests fail until relayd, decide() and the verdict know a new one.
    """

    FLAGS = (
        Flag(
            "allow_authenticated",
            "hosts and clients that successfully authenticate",
            "Clients that log in with SMTP AUTH (only offered after STARTTLS) may relay.",
            default=True,
            relayers="authenticated clients",
        ),
        Flag(
            "allow_listed_ips",
            "hosts and clients with these IP addresses",
            "Clients in the trusted networks below may relay.",
            default=True,
            relayers="these IP addresses",
        ),
        Flag(
            "allow_internal_addresses",
            "hosts and clients connecting to these internal addresses",
            "Anyone who connects to one of the internal addresses may relay. Dangerous: only for a "
            "network card that is solely connected to the internal network.",
            default=False,
            relayers="clients connecting to the internal addresses",
        ),
    )
    FLAG_NAMES = tuple(flag.name for flag in FLAGS)

    class Meta:
        verbose_name = "routing restrictions"
        verbose_name_plural = "routing restrictions"
        constraints = [models.CheckConstraint(condition=models.Q(pk=1), name="routing_restrictions_singleton")]

    def __str__(self):
        return "Routing restrictions"

    def save(self, *args, **kwargs):
        self.pk = 1
        if self._state.adding and self.created_at is None:
            # A fresh instance replaces the one row: keep when and by whom that row was created.
            existing = type(self).objects.filter(pk=1).values("created_at", "created_by").first()
            if existing:
                self.created_at, self.created_by_id = existing["created_at"], existing["created_by"]
                self._state.adding = False
        super().save(*args, **kwargs)

    def clean(self):
        if self.pk not in (None, 1):
            raise ValidationError("There is only one set of routing restrictions.")

    @classmethod
    def load(cls) -> "RoutingRestrictions":
        """Return the single row, or the safe defaults (unsaved) before anyone has saved it.

        Reading never writes: a write is a policy change, with an audit entry and a revision.
        """
        return cls.objects.filter(pk=1).first() or cls(pk=1)

    def flag_values(self) -> dict[str, bool]:
        """Return each flag's setting by name, as the snapshot carries them."""
        return {name: getattr(self, name) for name in self.FLAG_NAMES}

    def checks(self) -> list[tuple[Flag, bool]]:
        """Return each flag with its setting, in the dialog's order."""
        return [(flag, getattr(self, flag.name)) for flag in self.FLAGS]

    @classmethod
    def relayers(cls, flags: dict) -> list[str]:
        """Say who may relay under a snapshot's restrictions, one phrase per flag that is on."""
        # A revision saved before a flag existed lacks its key: nobody relayed that way then.
        return [flag.relayers for flag in cls.FLAGS if flags.get(flag.name)]


for _flag in RoutingRestrictions.FLAGS:
    RoutingRestrictions.add_to_class(_flag.name, _flag.field())


class NetworkEntry(TrackedModel):
    """An IPv4 or IPv6 network stored normalised, with its range kept sortable on any database.

    `range_start`/`range_end` are the first and last address as 32 hex digits, so "which
    entries contain 10.1.2.3" is an indexed range query on SQLite and PostgreSQL alike.
    """

    network = models.CharField(
        "network",
        max_length=49,
        unique=True,
        help_text="CIDR such as 10.1.0.0/16 or 2001:db8::/32; a single host is a /32 or /128.",
    )
    family = models.PositiveSmallIntegerField("address family", choices=[(4, "IPv4"), (6, "IPv6")], editable=False)
    range_start = models.CharField(max_length=32, editable=False, db_index=True)
    range_end = models.CharField(max_length=32, editable=False)
    description = models.CharField("description", max_length=200, blank=True, help_text="What this network is.")

    class Meta:
        abstract = True
        ordering = ["family", "range_start", "range_end"]

    def __str__(self):
        return self.network

    def save(self, *args, **kwargs):
        self.normalise()
        super().save(*args, **kwargs)

    def normalise(self, network: netaddr.IPNetwork | None = None) -> None:
        """Write the network in canonical form and derive its family and range.

        save() does this; call it yourself before `bulk_create`, which skips save(). Pass the
        network if you have already parsed it.
        """
        network = network or addresses.parse_network(self.network)
        self.network = addresses.network_text(network)
        self.family = network.version
        self.range_start = f"{network.first:032x}"
        self.range_end = f"{network.last:032x}"

    @property
    def ip_network(self) -> netaddr.IPNetwork:
        return netaddr.IPNetwork(self.network)

    @property
    def is_host(self) -> bool:
        return self.ip_network.size == 1

    def clean(self):
        network = self.clean_network()
        duplicate = type(self).objects.filter(network=self.network).exclude(pk=self.pk).first()
        if duplicate:
            raise ValidationError(
                {"network": addresses.duplicate_message(duplicate.as_listed())},
                code="duplicate",
            )
        self.check_network(network)

    def clean_network(self) -> netaddr.IPNetwork:
        """Parse and normalise the network. No database access: bulk imports check duplicates in memory."""
        try:
            network = addresses.parse_network(self.network)
        except addresses.AddressError as exc:
            raise ValidationError({"network": exc.messages}) from None
        self.network = addresses.network_text(network)
        return network

    def check_network(self, network: netaddr.IPNetwork) -> None:
        """Refuse a network this list must not hold; subclasses add their rules. No database access."""

    @property
    def is_active(self) -> bool:
        """Tell whether the entry takes effect (a disabled or expired one does not, and warns of nothing)."""
        return True

    def as_listed(self) -> addresses.ListedNetwork:
        return addresses.ListedNetwork(
            key=self.pk, network=self.ip_network, description=self.description, active=self.is_active
        )


class TrustedNetworkQuerySet(models.QuerySet):
    """Trusted networks by whether they take effect at a moment: enabled, and not expired by then.

    `now` defaults to the current time; give it to judge several queries at one moment.
    """

    def active(self, now=None):
        """Return the entries in force: enabled, and expiring never or after now."""
        return self.filter(enabled=True).exclude(expires_at__lte=now or timezone.now())

    def inactive(self, now=None):
        """Return the entries kept but not in force: disabled, or expired by now."""
        return self.filter(models.Q(enabled=False) | models.Q(expires_at__lte=now or timezone.now()))

    def expired(self, now=None):
        """Return the enabled entries that have expired by now."""
        return self.filter(enabled=True, expires_at__lte=now or timezone.now())


class TrustedNetwork(RelayProfile, NetworkEntry):
    """A network whose clients may relay when "these IP addresses" is on."""

    enabled = models.BooleanField("enabled", default=True, help_text="Disabled entries are kept but not trusted.")
    expires_at = models.DateTimeField(
        "expires",
        null=True,
        blank=True,
        help_text="After this moment the network is no longer trusted.",
    )
    open_relay_override = models.BooleanField(
        "allow a huge public range",
        default=False,
        help_text="Trust a range such as 0.0.0.0/0 anyway. This makes the server an open relay for everyone in it.",
    )

    objects = TrustedNetworkQuerySet.as_manager()

    class Meta(NetworkEntry.Meta):
        verbose_name = "trusted network"

    @property
    def is_expired(self) -> bool:
        return self.expires_at is not None and self.expires_at <= timezone.now()

    @property
    def is_active(self) -> bool:
        return self.takes_effect(self.enabled, self.expires_at)

    @staticmethod
    def takes_effect(enabled: bool, expires_at, now=None) -> bool:
        """Tell whether an entry so set is trusted at now: the rule of TrustedNetwork.objects.active()."""
        return enabled and (expires_at is None or expires_at > (now or timezone.now()))

    def clean(self):
        self.clean_profile()
        super().clean()

    def check_network(self, network):
        problem = addresses.open_relay_problem(network)
        if problem and not self.open_relay_override:
            raise ValidationError({"network": problem}, code="open_relay")


class DeniedNetwork(NetworkEntry):
    """ "Hosts and clients that can NEVER route mail": overrides every kind of trust."""

    class Meta(NetworkEntry.Meta):
        verbose_name = "denied network"


class InternalAddress(TrackedModel):
    """One of this server's own addresses, used by "connecting to these internal addresses"."""

    # Text, not GenericIPAddressField: PostgreSQL's inet type writes ::a:b back as ::10.0.0.11, which
    # relayd refuses. The canonical text (addresses.address_text) is stored as it is published.
    address = models.CharField(
        "address",
        max_length=39,
        unique=True,
        help_text="An address of this server, e.g. 192.168.1.10 on the internal network card.",
    )
    description = models.CharField("description", max_length=200, blank=True, help_text="Which interface this is.")

    class Meta:
        verbose_name = "internal address"
        verbose_name_plural = "internal addresses"
        ordering = ["address"]

    def __str__(self):
        return self.address

    def clean(self):
        try:
            self.address = addresses.address_text(addresses.parse_host(self.address))
        except addresses.AddressError as exc:
            raise ValidationError({"address": exc.messages}) from None
        if InternalAddress.objects.filter(address=self.address).exclude(pk=self.pk).exists():
            raise ValidationError(
                {"address": f"{self.address} is already an internal address."},
                code="duplicate",
            )


class LocalDomain(TrackedModel):
    """A domain this server accepts mail for from anyone, and where that mail goes next."""

    domain = models.CharField(
        "domain",
        max_length=253,
        unique=True,
        error_messages={"unique": "This domain is already a local domain."},
        help_text="Lowercase; international names are stored as punycode (xn--…).",
    )
    include_subdomains = models.BooleanField(
        "include subdomains",
        default=False,
        help_text="Also accept mail for any name under this domain.",
    )
    route = models.CharField(
        "route (next hop)",
        max_length=270,
        blank=True,
        help_text="host:port of the server that takes this domain's mail, e.g. mail.internal:25. "
        "Empty: no route of its own (smarthost, else MX).",
    )
    description = models.CharField("description", max_length=200, blank=True)

    class Meta:
        verbose_name = "local domain"
        ordering = ["domain"]

    def __str__(self):
        return self.domain

    def clean(self):
        errors = {}
        try:
            self.domain = normalise_domain(self.domain)
        except ValidationError as exc:
            errors["domain"] = exc.messages
        try:
            self.route = normalise_route(self.route)
        except ValidationError as exc:
            errors["route"] = exc.messages
        if errors:
            raise ValidationError(errors)


class SmtpUser(RelayProfile, TrackedModel):
    """An SMTP AUTH account. Only a salted hash of the password is stored."""

    username = models.CharField(
        "username",
        max_length=128,
        unique=True,
        error_messages={"unique": "An SMTP user with this username already exists."},
        help_text="The SMTP AUTH login, case-insensitive: letters, digits and . _ @ + - only.",
    )
    password_hash = models.CharField("password hash", max_length=256, editable=False)
    enabled = models.BooleanField("enabled", default=True, help_text="Disabled accounts cannot log in.")
    description = models.CharField("description", max_length=200, blank=True)

    class Meta:
        verbose_name = "SMTP user"
        ordering = ["username"]

    def __str__(self):
        return self.username

    def clean(self):
        # Stored lowercase: SMTP logins are usually mail addresses, which users type in any case.
        self.username = (self.username or "").strip().lower()
        errors = {}
        if not re.fullmatch(r"[a-z0-9._@+-]{1,128}", self.username):
            errors["username"] = ValidationError("Use 1–128 letters, digits and . _ @ + - (no spaces).", code="invalid")
        try:
            self.clean_profile()
        except ValidationError as exc:
            errors.update(exc.message_dict)
        if not self.password_hash:
            errors[NON_FIELD_ERRORS] = ValidationError("Set a password for this account.", code="required")
        if errors:
            raise ValidationError(errors)

    @staticmethod
    def validate_password(raw_password: str) -> None:
        """Refuse a password too weak for SMTP AUTH; forms and the API both ask here."""
        if len(raw_password) < SMTP_PASSWORD_MIN_LENGTH:
            raise ValidationError(
                f"Use at least {SMTP_PASSWORD_MIN_LENGTH} characters: SMTP logins are attacked by bots.",
                code="password_too_short",
            )

    def set_password(self, raw_password: str) -> None:
        self.password_hash = make_password(raw_password, hasher=SMTP_PASSWORD_HASHER)

    def check_password(self, raw_password: str) -> bool:
        return check_password(raw_password, self.password_hash)


class PolicyRevision(models.Model):
    """An immutable snapshot of the whole policy, as published to relayd. Serials only grow."""

    serial = models.PositiveIntegerField("serial", unique=True)
    snapshot = models.TextField("snapshot", help_text="The exact JSON published (docs/snapshot.md).")
    sha256 = models.CharField("SHA-256", max_length=64, help_text="Of the snapshot text; the export ETag.")
    created_at = models.DateTimeField("created", default=timezone.now)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_by_name = models.CharField("created by", max_length=200, help_text="The actor as it was then.")
    source = models.CharField("source", max_length=10)
    reason = models.CharField("reason", max_length=500, blank=True)
    rolled_back_to = models.PositiveIntegerField(
        "rollback to serial", null=True, blank=True, help_text="Set when this revision restores an earlier one."
    )
    # What the snapshot leaves out but a rollback brings back exactly: disabled or expired trusted
    # networks (with their override) and disabled SMTP users. Null for revisions made before it existed.
    inactive = models.JSONField("inactive entries", null=True, blank=True, editable=False)

    class Meta:
        verbose_name = "policy revision"
        ordering = ["-serial"]

    def __str__(self):
        return f"revision {self.serial}"

    @cached_property
    def snapshot_data(self) -> dict:
        """Return the snapshot with its network lists as objects, however it was published (docs/snapshot.md)."""
        return read_snapshot(self.snapshot)


class AuditEntryQuerySet(models.QuerySet):
    def update(self, **kwargs):
        raise PermissionDenied("Audit entries are append-only.")

    def delete(self):
        raise PermissionDenied("Audit entries are append-only.")


class AuditEntry(models.Model):
    """One recorded change or security event. Append-only, and chained by hashes.

    `entry_hash` is an HMAC, keyed with a secret kept outside the database, over every field and
    `prev_hash`, so editing, deleting or reordering a row breaks the chain, which
    `manage.py verify_audit` reports; published snapshots anchor the head (docs/audit.md).
    """

    SOURCES = [(s, s) for s in ("web", "api", "cli", "import", "daemon", "system")]

    timestamp = models.DateTimeField("time", default=timezone.now, db_index=True)
    # Text, not a foreign key: deleting a user must neither change an entry (which would break
    # its hash) nor be refused by the append-only trigger (issue 11, finding 3).
    actor_username = models.CharField(
        "actor", max_length=150, blank=True, help_text="The user who acted, as named then; empty for the system."
    )
    actor_name = models.CharField(
        "actor name", max_length=200, help_text='The username as it was then, "name (token …)" or "system: COMMAND".'
    )
    source = models.CharField("source", max_length=10, choices=SOURCES)
    remote_addr = models.GenericIPAddressField("remote address", null=True, blank=True)
    request_id = models.CharField("request id", max_length=64, blank=True, db_index=True)
    action = models.CharField("action", max_length=32, db_index=True)
    object_type = models.CharField("object type", max_length=64, blank=True, db_index=True)
    object_id = models.CharField("object id", max_length=64, blank=True)
    object_repr = models.CharField("object", max_length=300, blank=True)
    before = models.JSONField("before", null=True, blank=True)
    after = models.JSONField("after", null=True, blank=True)
    reason = models.CharField("reason", max_length=500, blank=True)
    prev_hash = models.CharField("previous hash", max_length=64)
    entry_hash = models.CharField("hash", max_length=64, unique=True)

    objects = AuditEntryQuerySet.as_manager()

    class Meta:
        verbose_name = "audit entry"
        verbose_name_plural = "audit entries"
        ordering = ["-id"]

    def __str__(self):
        return f"{self.timestamp:%Y-%m-%d %H:%M:%S} {self.actor_name} {self.action} {self.object_repr}"

    def save(self, *args, **kwargs):
        if self.pk is not None:
            raise PermissionDenied("Audit entries are append-only.")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise PermissionDenied("Audit entries are append-only.")


def validate_node_name(name: str) -> None:
    """Refuse a node name relayd could not send: it travels as --node-name and in JSON reports."""
    if name != name.strip() or not all(character.isprintable() and not character.isspace() for character in name):
        raise ValidationError("A node name has no spaces or control characters, e.g. “mx1.example.net”.")


class ApiToken(models.Model):
    """A key for the REST API (`Authorization: Token <key>`).

    A person's token (no `node`) acts as its user, with the user's role and never more. A node
    token (`node` set) is a relayd node's: it may read relayd's export and report the status of
    that one node, nothing else, whatever its user's role (issue 11, findings 1 and 2).

    The key is `<prefix>.<secret>`. Only the prefix (to find the row) and a SHA-256 digest of
    the secret are stored, so the key is shown once, when it is made, and never again. The
    secret is 256 random bits, so a fast hash is enough: there is nothing to brute-force.
    """

    name = models.CharField("name", max_length=100, help_text="What uses this token, e.g. “ansible on ops1”.")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, verbose_name="user", on_delete=models.CASCADE, related_name="api_tokens"
    )
    prefix = models.CharField("key prefix", max_length=16, unique=True, editable=False)
    digest = models.CharField("SHA-256 of the secret", max_length=64, editable=False)
    read_only = models.BooleanField(
        "read-only", default=False, help_text="A read-only token can never write, whatever its user's role."
    )
    node = models.CharField(
        "relayd node",
        max_length=100,
        blank=True,
        validators=[validate_node_name],
        help_text="Empty: a person's token. A node name: a relayd node's token, which may only read relayd's "
        "export and report this node's status.",
    )
    expires_at = models.DateTimeField("expires", null=True, blank=True, help_text="Empty: never expires.")
    created_at = models.DateTimeField("created", auto_now_add=True)
    last_used_at = models.DateTimeField("last used", null=True, blank=True, editable=False)

    class Meta:
        verbose_name = "API token"
        ordering = ["user", "name"]
        constraints = [
            models.UniqueConstraint(
                fields=["user", "name"],
                name="api_token_name_unique_per_user",
                violation_error_message="This user already has a token with this name; choose another name.",
            )
        ]

    def __str__(self):
        return f"{self.name} ({self.prefix}…)"

    @property
    def is_node(self) -> bool:
        return bool(self.node)

    @property
    def is_expired(self) -> bool:
        return self.expires_at is not None and self.expires_at <= timezone.now()

    @staticmethod
    def hash_secret(secret: str) -> str:
        return hashlib.sha256(secret.encode()).hexdigest()

    def generate_key(self) -> str:
        """Give this (unsaved) token a fresh key and return it; only its digest is kept."""
        self.prefix = secrets.token_hex(6)
        secret = secrets.token_urlsafe(32)
        self.digest = self.hash_secret(secret)
        return f"{self.prefix}.{secret}"

    @classmethod
    def find(cls, key: str) -> "ApiToken | None":
        """Return the token this key belongs to, or None; expiry is the caller's to check."""
        prefix, _, secret = key.partition(".")
        token = cls.objects.select_related("user").filter(prefix=prefix).first() if secret else None
        if token is None or not hmac.compare_digest(token.digest, cls.hash_secret(secret)):
            return None
        return token


class SelfTestRun(models.Model):
    """One run of the open-relay battery (relayd.selftest) against an SMTP server."""

    target = models.CharField("target", max_length=300, help_text="host:port that was tested.")
    domain = models.CharField("domain", max_length=253, blank=True, help_text="The local domain used in the tricks.")
    started_at = models.DateTimeField("started", default=timezone.now, db_index=True)
    run_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    run_by_name = models.CharField("run by", max_length=200)
    accepted = models.PositiveIntegerField("accepted", default=0, help_text="Relay attempts the server accepted.")
    total = models.PositiveIntegerField("attempts", default=0)
    report = models.JSONField("report", null=True, blank=True, help_text="Every attempt and its reply.")
    error = models.CharField("error", max_length=500, blank=True, help_text="Why the test could not run.")
    revision_serial = models.PositiveIntegerField(
        "policy revision",
        null=True,
        blank=True,
        help_text="The latest policy revision when the test ran; after a newer one the result is stale.",
    )

    class Meta:
        verbose_name = "open-relay self-test"
        ordering = ["-started_at"]

    def __str__(self):
        return f"self-test of {self.target}: {self.summary}"

    @property
    def tested_as(self) -> str:
        """Return the client address the server judged ("" for results from before it was recorded)."""
        return (self.report or {}).get("client", "")

    @property
    def used_xclient(self) -> bool:
        """Tell whether the test claimed an untrusted address with XCLIENT, as an Internet client would be judged."""
        return bool((self.report or {}).get("xclient"))

    @property
    def inconclusive(self) -> bool:
        """Tell whether the test ran from an address the policy trusts: relaying then proves nothing."""
        return not self.error and bool((self.report or {}).get("client_trusted"))

    @property
    def open_relay(self) -> bool:
        return self.accepted > 0 and not self.inconclusive

    @property
    def outcome(self) -> str:
        """Return "failed" (it could not run), "inconclusive", "open_relay" or "safe": a failure is never a pass."""
        if self.error:
            return "failed"
        if self.inconclusive:
            return "inconclusive"
        return "open_relay" if self.open_relay else "safe"

    def is_stale(self, latest_serial: int | None) -> bool:
        """Tell whether the policy changed since the test (a result of unknown revision, once there is one, too)."""
        return self.revision_serial != latest_serial

    @property
    def summary(self) -> str:
        if self.error:
            return f"could not run ({self.error})"
        verdict = "OPEN RELAY" if self.accepted else "not an open relay"
        if self.used_xclient:
            return f"{verdict} for untrusted clients ({self.accepted}/{self.total}), tested as {self.tested_as}"
        if self.inconclusive:
            return (
                f"{self.accepted}/{self.total} accepted, but tested from {self.tested_as}, which is trusted: "
                "this result says nothing about Internet clients"
            )
        return f"{verdict} ({self.accepted}/{self.total} accepted)"


class RelayNode(models.Model):
    """A relayd instance that reports the policy serial it enforces and its counters."""

    name = models.CharField("node", max_length=100, unique=True, help_text="relayd's --node-name.")
    address = models.GenericIPAddressField("reported from", null=True, blank=True)
    serial = models.PositiveIntegerField("enforced serial", null=True, blank=True)
    tls = models.BooleanField("STARTTLS offered", default=False)
    version = models.CharField("relayd version", max_length=50, blank=True)
    schemas = models.JSONField(
        "snapshot schemas", default=list, blank=True, help_text="The snapshot schema versions the node enforces."
    )
    counters = models.JSONField("counters", default=dict, blank=True)
    refused_serial = models.PositiveIntegerField(
        "refused serial", null=True, blank=True, help_text="The revision the node last refused; null if unreadable."
    )
    refused_reason = models.CharField(
        "refusal", max_length=1000, blank=True, help_text="Why the node refused it; empty while it refuses nothing."
    )
    # Where the node's clients come from, for the NAT/load-balancer trap (policy/risks.py).
    proxy_hosts = models.JSONField(
        "proxy hosts", default=list, blank=True, help_text="The networks relayd takes PROXY headers from."
    )
    top_peer = models.JSONField(
        "busiest peer",
        null=True,
        blank=True,
        help_text="The TCP peer most connections came from: {address, connections, of}.",
    )
    first_seen_at = models.DateTimeField("first report", default=timezone.now)
    last_seen_at = models.DateTimeField("last report", default=timezone.now, db_index=True)
    # The node's last download of its snapshot, kept here rather than in the audit log (policy/downloads.py).
    fetched_serial = models.PositiveIntegerField(
        "fetched serial", null=True, blank=True, help_text="The revision the node's token last downloaded."
    )
    fetched_at = models.DateTimeField("last fetch", null=True, blank=True)
    fetched_from = models.GenericIPAddressField("fetched from", null=True, blank=True)
    # The token of the node's last report: revoking it stops this node's policy updates, and the
    # revoke page says so.
    token = models.ForeignKey(
        ApiToken, null=True, blank=True, on_delete=models.SET_NULL, related_name="nodes", verbose_name="API token"
    )

    class Meta:
        verbose_name = "relay node"
        ordering = ["name"]

    def __str__(self):
        return self.name

    @property
    def refusal(self) -> str:
        """Say which revision the node refused and why, or "" while it refuses none."""
        if not self.refused_reason:
            return ""
        revision = f"revision {self.refused_serial}" if self.refused_serial is not None else "a snapshot"
        return f"refused {revision}: {self.refused_reason}"


class RelayNodeSample(models.Model):
    """One report's cumulative counters, kept for a while for the accepted-versus-denied chart."""

    node = models.ForeignKey(RelayNode, on_delete=models.CASCADE, related_name="samples")
    at = models.DateTimeField(default=timezone.now, db_index=True)
    accepted = models.PositiveBigIntegerField(default=0)
    relay_denied = models.PositiveBigIntegerField(default=0)
    # Messages relayed since the node started, per holder: {"trusted_networks": {"10.1.0.0/16": 12},
    # "smtp_users": {"alice": 3}} (issue 15). Empty for reports of nodes that predate it.
    usage = models.JSONField("relayed messages per holder", default=dict, blank=True)

    class Meta:
        ordering = ["at"]

    def __str__(self):
        return f"{self.node} at {self.at:%Y-%m-%d %H:%M:%S}"


class Blocklist(models.Model):
    """A DNS blocklist (DNSBL) zone that the server's own addresses are checked against."""

    zone = models.CharField(
        "zone", max_length=200, unique=True, help_text="The DNS zone that is queried, e.g. zen.spamhaus.org."
    )
    delist_url = models.URLField(
        "delisting page", max_length=500, blank=True, help_text="Where to ask for removal once the cause is fixed."
    )
    notes = models.TextField(
        "usage terms", blank=True, help_text="The list's terms: free-use limits, registration, resolvers it refuses."
    )
    enabled = models.BooleanField("enabled", default=True, help_text="Disabled lists are kept but not queried.")
    ipv6 = models.BooleanField("lists IPv6", default=False, help_text="Query this list for IPv6 addresses too.")
    created_at = models.DateTimeField("created", auto_now_add=True)

    class Meta:
        verbose_name = "DNS blocklist"
        ordering = ["zone"]

    def __str__(self):
        return self.zone

    def save(self, *args, **kwargs):
        # Another zone is another list: the old zone's answers must not pass for the new one's.
        if self.pk is not None and Blocklist.objects.filter(pk=self.pk).exclude(zone=self.zone).exists():
            self.listings.all().delete()
        super().save(*args, **kwargs)

    def clean(self):
        from policy.dnsbl import ZoneError, normalise_zone

        try:
            self.zone = normalise_zone(self.zone)
        except ZoneError as exc:
            raise ValidationError({"zone": str(exc)}) from None
        if Blocklist.objects.filter(zone=self.zone).exclude(pk=self.pk).exists():
            raise ValidationError({"zone": f"{self.zone} is already in the list of blocklists."}, code="duplicate")


class WatchedAddress(TrackedModel):
    """A public address this server sends mail from, checked against every enabled blocklist."""

    address = models.GenericIPAddressField(
        "address", unique=True, help_text="A public address the server sends mail from, e.g. 192.0.2.25."
    )
    description = models.CharField("description", max_length=200, blank=True, help_text="Which host or node this is.")
    last_checked_at = models.DateTimeField("last checked", null=True, blank=True, editable=False)

    class Meta:
        verbose_name = "watched address"
        verbose_name_plural = "watched addresses"
        ordering = ["address"]

    def __str__(self):
        return self.address

    def clean(self):
        try:
            self.address = str(addresses.parse_public_address(self.address))
        except addresses.AddressError as exc:
            raise ValidationError({"address": exc.messages}) from None
        if WatchedAddress.objects.filter(address=self.address).exclude(pk=self.pk).exists():
            raise ValidationError({"address": f"{self.address} is already watched."}, code="duplicate")


LISTING_STATES = [
    ("listed", "listed"),
    ("clear", "clear"),
    ("refused", "query refused"),
    ("timeout", "timeout"),
    ("error", "error"),
]


class Listing(models.Model):
    """The latest answer of one blocklist about one watched address, and since when it has said so."""

    address = models.ForeignKey(WatchedAddress, on_delete=models.CASCADE, related_name="listings")
    blocklist = models.ForeignKey(Blocklist, on_delete=models.CASCADE, related_name="listings")
    state = models.CharField("state", max_length=10, choices=LISTING_STATES)
    reason = models.CharField("reason", max_length=1000, blank=True)
    codes = models.JSONField("return codes", default=list, blank=True)
    since = models.DateTimeField("first seen", help_text="When the list first gave this state, unbroken since.")
    checked_at = models.DateTimeField("checked")

    class Meta:
        verbose_name = "DNSBL listing"
        ordering = ["address__address", "blocklist__zone"]
        constraints = [models.UniqueConstraint(fields=["address", "blocklist"], name="one_listing_per_list")]

    def __str__(self):
        return f"{self.address} on {self.blocklist}: {self.get_state_display()}"


class ListingEvent(models.Model):
    """One change of a list's answer about an address: the history per address."""

    address = models.ForeignKey(WatchedAddress, on_delete=models.CASCADE, related_name="events")
    zone = models.CharField("zone", max_length=200, help_text="Kept as text: the history outlives a removed list.")
    state = models.CharField("state", max_length=10, choices=LISTING_STATES)
    previous_state = models.CharField("previous state", max_length=10, choices=LISTING_STATES, blank=True)
    reason = models.CharField("reason", max_length=1000, blank=True)
    at = models.DateTimeField("when", default=timezone.now, db_index=True)

    class Meta:
        verbose_name = "DNSBL state change"
        ordering = ["-at", "-id"]

    def __str__(self):
        return f"{self.address} on {self.zone}: {self.previous_state or 'new'} → {self.state}"


class ReputationCheck(models.Model):
    """One run of the blocklist check, from the button, the API or `manage.py check_blacklists`."""

    started_at = models.DateTimeField("started", default=timezone.now, db_index=True)
    finished_at = models.DateTimeField("finished", null=True, blank=True)
    started_by_name = models.CharField("started by", max_length=200)
    queries = models.PositiveIntegerField("queries", default=0)
    listed = models.PositiveIntegerField("listings", default=0)
    failed = models.PositiveIntegerField("failed queries", default=0, help_text="Refused, timed out or in error.")
    error = models.CharField("error", max_length=500, blank=True, help_text="Why the check could not run.")

    class Meta:
        verbose_name = "blocklist check"
        ordering = ["-started_at", "-id"]

    def __str__(self):
        return f"blocklist check at {self.started_at:%Y-%m-%d %H:%M:%S}: {self.summary}"

    @property
    def running(self) -> bool:
        return self.finished_at is None

    @property
    def summary(self) -> str:
        if self.running:
            return "running"
        if self.error:
            return f"could not run ({self.error})"
        return f"{self.queries} queries, {self.listed} listed, {self.failed} failed"
