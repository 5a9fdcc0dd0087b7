"""API of the blocklist checks: watched addresses with their state per list, the lists, checks and metrics."""

from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema, extend_schema_field
from rest_framework import serializers, status, viewsets
from rest_framework.response import Response
from rest_framework.views import APIView

from policy import reputation
from policy.api.serializers import ModelCleanSerializer
from policy.api.views import AuditedAPIMixin
from policy.models import Blocklist, Listing, ReputationCheck, WatchedAddress


class ListingSerializer(serializers.ModelSerializer):
    zone = serializers.CharField(source="blocklist.zone", read_only=True)
    delist_url = serializers.CharField(source="blocklist.delist_url", read_only=True)

    class Meta:
        model = Listing
        fields = ["zone", "state", "reason", "codes", "since", "checked_at", "delist_url"]


class WatchedAddressSerializer(ModelCleanSerializer):
    parsed_by_clean = ("address",)
    address = serializers.CharField(
        max_length=100, help_text="A public IPv4 or IPv6 address the server sends mail from; returned normalised."
    )
    listed = serializers.SerializerMethodField(help_text="Whether any enabled list names this address now.")
    listings = serializers.SerializerMethodField(help_text="The last answer of each list, and since when.")

    class Meta:
        model = WatchedAddress
        fields = ["id", "address", "description", "listed", "listings", "last_checked_at", "created_at"]
        read_only_fields = ["last_checked_at", "created_at"]

    def validate_address(self, value):
        # An address's answers and history belong to it: watching another one is a new entry.
        if self.instance is not None and value.strip() != self.instance.address:
            raise serializers.ValidationError(
                "An address cannot be changed: remove it and add the new one, which gets its own history."
            )
        return value

    def _current(self, obj) -> list[Listing]:
        return [listing for listing in obj.listings.all() if listing.blocklist.enabled]

    def get_listed(self, obj) -> bool:
        return any(listing.state == "listed" for listing in self._current(obj))

    @extend_schema_field(ListingSerializer(many=True))
    def get_listings(self, obj) -> list[dict]:
        return ListingSerializer(self._current(obj), many=True).data  # type: ignore[return-value]  # a list: many=True


class BlocklistSerializer(ModelCleanSerializer):
    parsed_by_clean = ("zone",)

    class Meta:
        model = Blocklist
        fields = ["id", "zone", "delist_url", "notes", "enabled", "ipv6", "created_at"]
        read_only_fields = ["created_at"]


class ReputationCheckSerializer(serializers.ModelSerializer):
    running = serializers.BooleanField(read_only=True)
    summary = serializers.CharField(read_only=True)

    class Meta:
        model = ReputationCheck
        fields = ["id", "started_at", "finished_at", "started_by_name", "running", "queries", "listed", "failed"]
        fields += ["error", "summary"]


class ReputationViewSet(AuditedAPIMixin, viewsets.ModelViewSet):
    """Watched addresses, each with every list's last answer: state, reason, return codes and dates.

    POST {"address": "…"} adds one; private, loopback and other non-public addresses are refused.
    """

    queryset = WatchedAddress.objects.prefetch_related("listings__blocklist")
    serializer_class = WatchedAddressSerializer
    lookup_value_regex = r"\d+"
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]

    def perform_create(self, serializer):
        serializer.save(created_by=self.request.user)


class BlocklistViewSet(AuditedAPIMixin, viewsets.ModelViewSet):
    """The DNS blocklists (zones) that the watched addresses are checked against."""

    queryset = Blocklist.objects.all()
    serializer_class = BlocklistSerializer


class CheckView(AuditedAPIMixin, APIView):
    """GET: the latest check. POST: start a check in the background (202); 409 while one runs."""

    @extend_schema(responses={200: ReputationCheckSerializer})
    def get(self, request):
        check = reputation.latest_check()
        if check is None:
            return Response({"detail": "No check has run yet."}, status=status.HTTP_404_NOT_FOUND)
        return Response(ReputationCheckSerializer(check).data)

    @extend_schema(request=None, responses={202: ReputationCheckSerializer})
    def post(self, request):
        try:
            check = reputation.start_background_check()
        except reputation.CheckRefused as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_409_CONFLICT)
        return Response(ReputationCheckSerializer(check).data, status=status.HTTP_202_ACCEPTED)


class MetricsView(APIView):
    """The number of listings and each list's state per address, in Prometheus' text format."""

    @extend_schema(responses={(200, "text/plain"): OpenApiTypes.STR})
    def get(self, request):
        return HttpResponse(reputation.metrics_text(), content_type="text/plain; version=0.0.4; charset=utf-8")
