"""Serializers turn JSON into model fields and back. Validation is the models' own clean().

DRF's automatic unique validators are dropped: they would word a duplicate differently from
the forms, and checking before normalising misses "10.0.0.0/255.0.0.0" vs "10.0.0.0/8".
"""

from django.core.exceptions import NON_FIELD_ERRORS
from django.core.exceptions import ValidationError as DjangoValidationError
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers
from rest_framework.settings import api_settings
from rest_framework.validators import UniqueValidator

from policy import daemons, services
from policy.models import (
    PROFILE_FIELDS,
    AuditEntry,
    DeniedNetwork,
    InternalAddress,
    LocalDomain,
    PolicyRevision,
    RelayNode,
    RoutingRestrictions,
    SelfTestRun,
    SmtpUser,
    TrustedNetwork,
)
from policy.selftests import latest_serial

TIMESTAMPS = ("created_at", "updated_at")


# The schema promises the list form; the one-text form is a convenience for CSV cells.
@extend_schema_field(serializers.ListField(child=serializers.CharField()))
class DomainListField(serializers.Field):
    """A list of domain names; also taken as one text of names split by spaces or commas (a CSV cell).

    The model's clean() checks and normalises each name, so the API and the forms word errors alike.
    """

    default_error_messages = {"invalid": 'Enter a list of domain names, e.g. ["example.com"].'}

    def to_internal_value(self, data):
        if isinstance(data, str):
            return data.replace(",", " ").split()
        if not isinstance(data, list) or not all(isinstance(item, str) for item in data):
            self.fail("invalid")
        return data

    def to_representation(self, value):
        return list(value)


class ProfileSerializerMixin(serializers.Serializer):
    """The relay profile's fields (issue 15); see RelayProfile."""

    allowed_sender_domains = DomainListField(
        required=False,
        help_text="MAIL FROM must be in one of these domains or their subdomains to relay; empty: any sender.",
    )


class ModelCleanSerializer(serializers.ModelSerializer):
    """Validate by running the model's full_clean(), and hand back its normalised values."""

    # Fields that the model's clean() parses from the raw text itself. Django's field checks
    # would judge the text first, in other words (and GenericIPAddressField drops an IPv6 zone).
    parsed_by_clean: tuple[str, ...] = ()

    def build_field(self, *args, **kwargs):
        field_class, field_kwargs = super().build_field(*args, **kwargs)
        if "validators" in field_kwargs:
            field_kwargs["validators"] = [v for v in field_kwargs["validators"] if not isinstance(v, UniqueValidator)]
        return field_class, field_kwargs

    def get_validators(self):
        return []  # unique-together checks come from full_clean() too

    def validate(self, attrs):
        if self.context.get("bulk"):
            return attrs  # services.import_networks cleans the rows together, duplicates included
        instance = self.instance or self.Meta.model()
        names = self.apply(instance, attrs)
        try:
            instance.full_clean(exclude=self.parsed_by_clean)
        except DjangoValidationError as exc:
            errors = serializers.as_serializer_error(exc)
            if NON_FIELD_ERRORS in errors:
                errors[api_settings.NON_FIELD_ERRORS_KEY] = errors.pop(NON_FIELD_ERRORS)
            raise serializers.ValidationError(errors) from None
        return {name: getattr(instance, name) for name in names}

    def apply(self, instance, attrs) -> list[str]:
        """Set the input on the instance; return the model fields it set."""
        for name, value in attrs.items():
            setattr(instance, name, value)
        return list(attrs)


class NetworkEntrySerializer(ModelCleanSerializer):
    parsed_by_clean = ("network",)
    network = serializers.CharField(
        max_length=100,
        help_text="CIDR (10.1.0.0/16), address/mask (10.1.0.0/255.255.0.0), a host (192.0.2.7) or IPv6 "
        "(2001:db8::/32). Returned normalised: 10.0.0.0/255.0.0.0 comes back as 10.0.0.0/8.",
    )
    warnings = serializers.SerializerMethodField(
        help_text="Entries that cover this one or that it covers; saved anyway, but check them."
    )

    class Meta:
        fields: tuple[str, ...] = ("id", "network", "family", "description", *TIMESTAMPS, "warnings")
        read_only_fields = ("family", *TIMESTAMPS)

    def get_warnings(self, obj) -> list[str]:
        # Only answers to a write carry warnings; listing 10,000 entries must not run 10,000 queries.
        if self.context.get("with_warnings"):
            return services.network_warnings(obj)
        return []


class TrustedNetworkSerializer(ProfileSerializerMixin, NetworkEntrySerializer):
    class Meta(NetworkEntrySerializer.Meta):
        model = TrustedNetwork
        fields = (
            *NetworkEntrySerializer.Meta.fields,
            "enabled",
            "expires_at",
            "open_relay_override",
            *PROFILE_FIELDS,
        )


class DeniedNetworkSerializer(NetworkEntrySerializer):
    class Meta(NetworkEntrySerializer.Meta):
        model = DeniedNetwork


class InternalAddressSerializer(ModelCleanSerializer):
    parsed_by_clean = ("address",)
    address = serializers.CharField(
        max_length=100, help_text="One address of this server, e.g. 192.168.1.10; returned normalised."
    )

    class Meta:
        model = InternalAddress
        fields = ("id", "address", "description", *TIMESTAMPS)
        read_only_fields = TIMESTAMPS


class LocalDomainSerializer(ModelCleanSerializer):
    class Meta:
        model = LocalDomain
        fields = ("id", "domain", "include_subdomains", "route", "description", *TIMESTAMPS)
        read_only_fields = TIMESTAMPS


class SmtpUserSerializer(ProfileSerializerMixin, ModelCleanSerializer):
    password = serializers.CharField(
        write_only=True,
        required=False,
        trim_whitespace=False,
        style={"input_type": "password"},
        help_text="Required when creating; leave out to keep the current one. Never returned.",
    )

    class Meta:
        model = SmtpUser
        fields = ("id", "username", "password", "enabled", "description", *PROFILE_FIELDS, *TIMESTAMPS)
        read_only_fields = TIMESTAMPS

    def apply(self, instance, attrs) -> list[str]:
        fields = dict(attrs)
        password = fields.pop("password", None)
        names = super().apply(instance, fields)
        if password is None:
            return names
        try:
            SmtpUser.validate_password(password)
        except DjangoValidationError as exc:
            raise serializers.ValidationError({"password": exc.messages}) from None
        instance.set_password(password)
        return [*names, "password_hash"]


class RoutingRestrictionsSerializer(ModelCleanSerializer):
    updated_at = serializers.DateTimeField(read_only=True, allow_null=True, help_text="Null until first saved.")

    class Meta:
        model = RoutingRestrictions
        fields = (*RoutingRestrictions.FLAG_NAMES, "updated_at")
        read_only_fields = ("updated_at",)


class AuditEntrySerializer(serializers.ModelSerializer):
    actor = serializers.SerializerMethodField(help_text="The user's name as it was then; null for the system.")

    class Meta:
        model = AuditEntry
        fields = (
            "id",
            "timestamp",
            "actor",
            "actor_name",
            "source",
            "remote_addr",
            "request_id",
            "action",
            "object_type",
            "object_id",
            "object_repr",
            "before",
            "after",
            "reason",
            "prev_hash",
            "entry_hash",
        )
        read_only_fields = fields

    def get_actor(self, entry) -> str | None:
        return entry.actor_username or None


class BulkResultSerializer(serializers.Serializer):
    """The answer to a bulk write: what changed (or would, in a dry run), and overlap warnings."""

    dry_run = serializers.BooleanField()
    created = serializers.IntegerField()
    updated = serializers.IntegerField()
    deleted = serializers.IntegerField()
    unchanged = serializers.IntegerField()
    warnings = serializers.ListField(child=serializers.CharField())


class RowErrorSerializer(serializers.Serializer):
    row = serializers.IntegerField(help_text="Position in the request list (or CSV data row), from 1.")
    # The metaclass takes declared fields out of the class, so these do not hide Serializer.errors.
    errors = serializers.DictField(child=serializers.ListField(child=serializers.CharField()))  # type: ignore[assignment]


class BulkErrorSerializer(serializers.Serializer):
    """A refused bulk write: nothing was saved. The first 1,000 bad rows are listed; `detail` counts them all."""

    detail = serializers.CharField()
    errors = RowErrorSerializer(many=True, required=False, help_text="Absent when the request as a whole is wrong.")  # type: ignore[assignment]


def parse_rows(serializer_class, items) -> tuple[list[dict | None], dict[int, dict]]:
    """Parse each row's fields on its own, so one bad row does not hide the others.

    Return the parsed rows (None where a row failed) and the errors by row number from 1.
    Unknown fields are refused: a typo in a 10,000-row import must not pass unnoticed.
    """
    # One serializer for all rows: building its fields costs more than validating a row.
    serializer = serializer_class(context={"bulk": True})
    known = set(serializer.fields)
    writable = ", ".join(name for name, field in serializer.fields.items() if not field.read_only)
    rows, errors = [], {}
    for number, item in enumerate(items, 1):
        row_errors = {}
        try:
            rows.append(serializer.run_validation(item))
        except serializers.ValidationError as exc:
            rows.append(None)
            detail = serializers.as_serializer_error(exc)
            row_errors = {name: [str(message) for message in messages] for name, messages in detail.items()}
        if isinstance(item, dict):
            for name in sorted(set(item) - known):
                row_errors[name] = [f"Unknown field; the fields are {writable}."]
            if row_errors:
                rows[-1] = None
        if row_errors:
            errors[number] = row_errors
    return rows, errors


# What the policy turns into, for policy/api/publishing.py: revisions, relayd nodes, the tester, the self-test.


class RevisionSerializer(serializers.ModelSerializer):
    class Meta:
        model = PolicyRevision
        fields = ["serial", "sha256", "created_at", "created_by_name", "source", "reason", "rolled_back_to"]


class RevisionDetailSerializer(RevisionSerializer):
    class Meta(RevisionSerializer.Meta):
        fields = [*RevisionSerializer.Meta.fields, "snapshot"]


class RollbackSerializer(serializers.Serializer):
    reason = serializers.CharField(max_length=500, required=False, allow_blank=True)
    confirm_open_relay = serializers.BooleanField(
        required=False, help_text="Roll back even though that revision makes the server an open relay."
    )


class NodeSerializer(serializers.ModelSerializer):
    state = serializers.SerializerMethodField()

    class Meta:
        model = RelayNode
        fields = [
            "name",
            "address",
            "serial",
            "state",
            "refused_serial",
            "refused_reason",
            "refusal",
            "tls",
            "version",
            "schemas",
            "counters",
            "proxy_hosts",
            "top_peer",
            "first_seen_at",
            "last_seen_at",
            "fetched_serial",
            "fetched_at",
            "fetched_from",
        ]

    def get_state(self, node) -> str:
        return self.context["states"].get(node.pk, "unknown")


class NodeReportSerializer(serializers.Serializer):
    """A node's status report, described for the schema: daemons.parse_report checks it, with these bounds."""

    node = serializers.CharField(max_length=100)
    serial = serializers.IntegerField(min_value=0, max_value=daemons.MAX_SERIAL, allow_null=True, required=False)
    tls = serializers.BooleanField(required=False)
    version = serializers.CharField(max_length=50, allow_blank=True, required=False)
    # The snapshot schemas the node enforces; a relayd that predates reporting them understands schema 1 only.
    schemas = serializers.ListField(
        child=serializers.IntegerField(min_value=1, max_value=daemons.MAX_SCHEMA),
        min_length=1,
        max_length=daemons.MAX_SCHEMAS,
        required=False,
    )
    counters = serializers.DictField(
        child=serializers.IntegerField(min_value=0, max_value=daemons.MAX_COUNT), required=False
    )
    # The last snapshot the node refused since the policy it enforces, if any (docs/snapshot.md).
    refused_serial = serializers.IntegerField(
        min_value=0, max_value=daemons.MAX_SERIAL, allow_null=True, required=False
    )
    refused_reason = serializers.CharField(allow_null=True, allow_blank=True, required=False, trim_whitespace=False)
    # Messages relayed per trusted network and SMTP user (issue 15).
    usage = serializers.JSONField(required=False)
    # Where the node's clients come from (docs/snapshot.md).
    proxy_hosts = serializers.ListField(
        child=serializers.CharField(max_length=100), max_length=daemons.MAX_PROXY_HOSTS, required=False
    )
    top_peer = serializers.JSONField(allow_null=True, required=False)


class CheckQuerySerializer(serializers.Serializer):
    client = serializers.CharField()
    local_address = serializers.CharField(required=False, allow_blank=True)
    authenticated = serializers.BooleanField(required=False, default=False)
    recipient = serializers.CharField()


class CheckResultSerializer(serializers.Serializer):
    allowed = serializers.BooleanField()
    reply = serializers.CharField()
    code = serializers.IntegerField()
    enhanced = serializers.CharField()
    rule = serializers.CharField()
    detail = serializers.CharField()
    route = serializers.CharField(allow_null=True)
    notes = serializers.ListField(child=serializers.CharField())


class SelfTestSerializer(serializers.ModelSerializer):
    open_relay = serializers.BooleanField(read_only=True)
    outcome = serializers.CharField(
        read_only=True,
        help_text="safe, open_relay, inconclusive (tested from a trusted address, without XCLIENT) or failed",
    )
    summary = serializers.CharField(read_only=True)
    tested_as = serializers.CharField(read_only=True, help_text="The client address the server judged.")
    used_xclient = serializers.BooleanField(read_only=True, help_text="The test claimed tested_as with XCLIENT.")
    stale = serializers.SerializerMethodField(help_text="The policy changed since the test: run it again.")

    def get_stale(self, run) -> bool:
        if "latest_serial" not in self.context:
            self.context["latest_serial"] = latest_serial()  # type: ignore[index]  # a dict; typed read-only
        return run.is_stale(self.context["latest_serial"])

    class Meta:
        model = SelfTestRun
        fields = [
            "id",
            "target",
            "domain",
            "started_at",
            "run_by_name",
            "accepted",
            "total",
            "open_relay",
            "outcome",
            "summary",
            "tested_as",
            "used_xclient",
            "revision_serial",
            "stale",
            "error",
            "report",
        ]
        read_only_fields = [name for name in fields if name not in ("target", "domain")]
        extra_kwargs = {"target": {"required": False}}
