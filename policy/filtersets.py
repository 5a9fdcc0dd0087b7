"""Filters for lists in the API and on pages: one FilterSet per model, django-filter style."""

from datetime import UTC

import django_filters
from django import forms
from django.core.exceptions import ValidationError
from django.db.models import Q
from django_filters.fields import IsoDateTimeField
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field

from policy import addresses
from policy.models import AuditEntry, DeniedNetwork, InternalAddress, LocalDomain, SmtpUser, TrustedNetwork

# "network" sorts by address, not as text: 9.0.0.0/8 comes before 10.0.0.0/8.
NETWORK_ORDERING = (("range_start", "network"), ("description", "description"), ("created_at", "created_at"))


class NetworkField(forms.CharField):
    """An address or network in any form the dialog accepts, parsed by `policy.addresses`."""

    def to_python(self, value):
        value = super().to_python(value)
        if not value:
            return None
        try:
            return addresses.parse_network(value)
        except addresses.AddressError as exc:
            # Through params: django-filter %-formats every message, and "fe80::1%lo" holds a "%".
            raise ValidationError("%(message)s", code=exc.code, params={"message": exc.messages[0]}) from None


@extend_schema_field(OpenApiTypes.STR)
class NetworkFilter(django_filters.Filter):
    field_class = NetworkField


class UtcDateTimeField(IsoDateTimeField):
    """An ISO 8601 time, converted to UTC: PostgreSQL refuses offsets such as +18:04."""

    def to_python(self, value):
        value = super().to_python(value)
        if value is None:
            return None
        try:
            return value.astimezone(UTC)
        except OverflowError:
            raise ValidationError("Enter a time between the years 1 and 9999.", code="overflow") from None


class UtcDateTimeFilter(django_filters.IsoDateTimeFilter):
    field_class = UtcDateTimeField


class SearchFilterSet(django_filters.FilterSet):
    """Adds `q`, a case-insensitive search over the fields named in `search_fields`."""

    search_fields: tuple[str, ...] = ()
    q = django_filters.CharFilter(method="search", label="Search")

    def search(self, queryset, name, value):
        condition = Q()
        for field in self.search_fields:
            condition |= Q(**{f"{field}__icontains": value})
        return queryset.filter(condition)


class NetworkFilterSet(SearchFilterSet):
    search_fields = ("network", "description")
    contains = NetworkFilter(
        method="filter_contains",
        label="Contains address",
        help_text="Entries that contain this address or network, e.g. 10.1.2.3 or 10.1.0.0/16.",
    )
    family = django_filters.ChoiceFilter(choices=[(4, "IPv4"), (6, "IPv6")], label="Address family")
    description = django_filters.CharFilter(lookup_expr="icontains", label="Description contains")
    ordering = django_filters.OrderingFilter(fields=NETWORK_ORDERING)

    def filter_contains(self, queryset, name, network):
        # The hex ranges compare as text on every database; the family keeps IPv4 off ::/96.
        return queryset.filter(
            family=network.version,
            range_start__lte=f"{network.first:032x}",
            range_end__gte=f"{network.last:032x}",
        )


class TrustedNetworkFilterSet(NetworkFilterSet):
    enabled = django_filters.BooleanFilter()
    ordering = django_filters.OrderingFilter(fields=(*NETWORK_ORDERING, ("expires_at", "expires_at")))

    class Meta:
        model = TrustedNetwork
        fields = ["contains", "family", "enabled", "description", "q"]


class DeniedNetworkFilterSet(NetworkFilterSet):
    class Meta:
        model = DeniedNetwork
        fields = ["contains", "family", "description", "q"]


class InternalAddressFilterSet(SearchFilterSet):
    search_fields = ("address", "description")
    ordering = django_filters.OrderingFilter(fields=("address", "description", "created_at"))

    class Meta:
        model = InternalAddress
        fields = ["q"]


class LocalDomainFilterSet(SearchFilterSet):
    search_fields = ("domain", "route", "description")
    ordering = django_filters.OrderingFilter(fields=("domain", "route", "created_at"))

    class Meta:
        model = LocalDomain
        fields = ["include_subdomains", "q"]


class SmtpUserFilterSet(SearchFilterSet):
    search_fields = ("username", "description")
    ordering = django_filters.OrderingFilter(fields=("username", "created_at"))

    class Meta:
        model = SmtpUser
        fields = ["enabled", "q"]


class AuditEntryFilterSet(SearchFilterSet):
    """Filters of the audit log, shared by the API and the audit log page."""

    search_fields = ("object_repr", "actor_name", "reason")
    actor = django_filters.CharFilter(
        method="filter_actor", label="Actor", help_text="A username; also finds what that user did with tokens."
    )
    # Free text, not a fixed choice: entries also come from revisions, logins and later features.
    object_type = django_filters.CharFilter(
        lookup_expr="iexact", label="Object type", help_text="e.g. trusted network, SMTP user, user."
    )
    action = django_filters.CharFilter(label="Action", help_text="e.g. create, update, delete, login, bulk_add.")
    since = UtcDateTimeFilter(field_name="timestamp", lookup_expr="gte", label="Since")
    until = UtcDateTimeFilter(field_name="timestamp", lookup_expr="lte", label="Until")
    # The metaclass takes declared filters out of the class, so this does not hide FilterSet.request.
    request = django_filters.CharFilter(  # type: ignore[assignment]
        field_name="request_id", label="Request", help_text="A request id: every entry one request or command recorded."
    )

    class Meta:
        model = AuditEntry
        fields = ["actor", "object_type", "action", "since", "until", "q", "request"]

    def filter_actor(self, queryset, name, value):
        by_name = Q(actor_name__iexact=value) | Q(actor_name__istartswith=f"{value} (token ")
        return queryset.filter(Q(actor_username__iexact=value) | by_name)
