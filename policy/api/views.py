"""API views: declarative viewsets; policy operations live in `policy.services`."""

import contextlib

from django.conf import settings
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import exceptions, generics, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from policy import audit, filtersets, safety, services
from policy.api import serializers
from policy.api.parsers import BoundedJSONParser
from policy.middleware import own_policy_change
from policy.models import (
    ApiToken,
    AuditEntry,
    DeniedNetwork,
    InternalAddress,
    LocalDomain,
    RoutingRestrictions,
    SmtpUser,
    TrustedNetwork,
)
from policy.revisions import policy_change

MAX_ROW_ERRORS = 1000


def bad_request(detail: str, errors=None) -> Response:
    """Refuse a bulk request in the one documented shape: `detail`, plus `errors` per row."""
    body = {"detail": detail} if errors is None else {"detail": detail, "errors": errors}
    return Response(body, status=status.HTTP_400_BAD_REQUEST)


class OpenRelayRefused(exceptions.APIException):
    """A 400 that says the change would make the server an open relay, names the risks and how to confirm."""

    status_code = status.HTTP_400_BAD_REQUEST
    default_code = "open_relay"

    def __init__(self, danger: safety.DangerousChange):
        super().__init__(
            {
                "detail": danger.api_detail(),
                "risks": [risk.message for risk in danger.risks],
                safety.API_FIELD: ["Required for a change that makes the server an open relay."],
            }
        )


@contextlib.contextmanager
def open_relay_guard(request):
    """Refuse (400, nothing saved) writes that make an open relay unless the request confirmed it."""
    try:
        with safety.guard(confirmed=safety.api_confirmed(request)):
            yield
    except safety.DangerousChange as exc:
        raise OpenRelayRefused(exc) from None


def row_errors_summary(errors: dict, total: int) -> tuple[str, list[dict]]:
    """Return the refusal of a bulk write and its first MAX_ROW_ERRORS row errors.

    A list of every error of 10,000 bad rows would be megabytes that nobody reads.
    """
    shown = [{"row": row, "errors": errors[row]} for row in sorted(errors)[:MAX_ROW_ERRORS]]
    detail = f"{len(errors):,} of {total:,} rows are invalid; nothing was saved."
    if len(errors) > len(shown):
        detail += f" {len(shown):,} errors shown of {len(errors):,}; fix these and retry."
    return detail, shown


class AuditedAPIMixin:
    """Record API changes as made by the authenticated user and token, not the (absent) session user."""

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
        token = request.auth.name if isinstance(request.auth, ApiToken) else ""
        audit.update_context(user=request.user, token=token)


class PolicyViewSet(AuditedAPIMixin, viewsets.ModelViewSet):
    """List, read, create, update and delete one kind of policy entry; the creator is recorded.

    Where the list can make the server an open relay, a write that does so needs
    `"confirm_open_relay": true` in its body (or the query, for a delete).
    """

    can_open_relay = True

    def guard(self):
        return open_relay_guard(self.request) if self.can_open_relay else contextlib.nullcontext()

    def perform_create(self, serializer):
        with self.guard():
            serializer.save(created_by=self.request.user)

    def perform_update(self, serializer):
        with self.guard():
            serializer.save()

    def perform_destroy(self, instance):
        with self.guard():
            instance.delete()


class NetworkViewSet(PolicyViewSet):
    """A network list. Writes answer with overlap `warnings`; `bulk/` adds or replaces many at once."""

    def get_serializer_context(self):
        return {**super().get_serializer_context(), "with_warnings": self.request.method not in ("GET", "HEAD")}

    @extend_schema(
        parameters=[
            OpenApiParameter("mode", str, enum=services.IMPORT_MODES, description="add (default) or replace the list"),
            OpenApiParameter("dry_run", bool, description="validate and report, save nothing"),
            OpenApiParameter(
                safety.API_FIELD, bool, description="save even though the result makes the server an open relay"
            ),
        ],
        responses={200: serializers.BulkResultSerializer, 400: serializers.BulkErrorSerializer},
        description="Add many networks, or with mode=replace make the list exactly these, all or nothing. "
        "The body is a JSON list of entries as for a single create, at most RELAYADMIN_BULK_MAX_ROWS of them "
        "(default 10,000) and RELAYADMIN_MAX_BODY_BYTES long (default 5 MiB; larger bodies get a 413). "
        "A refusal lists the bad rows, the first 1,000 of them.",
    )
    @action(detail=False, methods=["post"], parser_classes=[BoundedJSONParser])
    @own_policy_change
    def bulk(self, request):
        mode = request.query_params.get("mode", "add")
        if mode not in services.IMPORT_MODES:
            return bad_request(f"Use mode=add or mode=replace, not “{mode}”.")
        dry_run = request.query_params.get("dry_run", "").lower() in ("1", "true", "yes")
        if not isinstance(request.data, list):
            return bad_request('Send a JSON list of networks, e.g. [{"network": "10.1.0.0/16"}].')
        if len(request.data) > settings.BULK_MAX_ROWS:
            return bad_request(
                f"Send at most {settings.BULK_MAX_ROWS:,} rows per request (RELAYADMIN_BULK_MAX_ROWS), "
                f"not {len(request.data):,}; nothing was saved. Split the list: mode=add adds to what is there."
            )
        # Rows are parsed before the policy lock is taken; a dry run never takes it.
        rows, row_errors = serializers.parse_rows(self.get_serializer_class(), request.data)
        task = {"mode": mode, "dry_run": dry_run, "row_errors": row_errors, "user": request.user}
        if dry_run:  # it writes nothing, so it needs neither the lock nor the open-relay guard
            result = services.import_networks(self.queryset.model, rows, **task)
        else:
            with policy_change(), self.guard():
                result = services.import_networks(self.queryset.model, rows, **task)
        if result.errors:
            return bad_request(*row_errors_summary(result.errors, len(rows)))
        return Response(
            {
                "dry_run": dry_run,
                "created": result.created,
                "updated": result.updated,
                "deleted": result.deleted,
                "unchanged": result.unchanged,
                "warnings": result.warnings,
            }
        )


@extend_schema_view(bulk=extend_schema(request=serializers.TrustedNetworkSerializer(many=True)))
class TrustedNetworkViewSet(NetworkViewSet):
    """Trusted networks: clients in them may relay when "these IP addresses" is on."""

    queryset = TrustedNetwork.objects.all()
    serializer_class = serializers.TrustedNetworkSerializer
    filterset_class = filtersets.TrustedNetworkFilterSet


@extend_schema_view(bulk=extend_schema(request=serializers.DeniedNetworkSerializer(many=True)))
class DeniedNetworkViewSet(NetworkViewSet):
    """Denied networks, the NEVER list: clients in them may never relay, whatever else holds."""

    queryset = DeniedNetwork.objects.all()
    can_open_relay = False  # refusing more clients never opens a relay
    serializer_class = serializers.DeniedNetworkSerializer
    filterset_class = filtersets.DeniedNetworkFilterSet


class InternalAddressViewSet(PolicyViewSet):
    """This server's own addresses, for "connecting to these internal addresses"."""

    queryset = InternalAddress.objects.all()
    serializer_class = serializers.InternalAddressSerializer
    filterset_class = filtersets.InternalAddressFilterSet


class LocalDomainViewSet(PolicyViewSet):
    """Local domains that anyone may deliver to, each with its route (next hop)."""

    queryset = LocalDomain.objects.all()
    can_open_relay = False
    serializer_class = serializers.LocalDomainSerializer
    filterset_class = filtersets.LocalDomainFilterSet


class SmtpUserViewSet(PolicyViewSet):
    """SMTP AUTH accounts. `password` is write-only: only its hash is stored, and it is never returned."""

    queryset = SmtpUser.objects.all()
    can_open_relay = False
    serializer_class = serializers.SmtpUserSerializer
    filterset_class = filtersets.SmtpUserFilterSet


class AuditEntryViewSet(AuditedAPIMixin, viewsets.ReadOnlyModelViewSet):
    """The audit log, newest first: every change and security event. Read-only."""

    queryset = AuditEntry.objects.all()
    serializer_class = serializers.AuditEntrySerializer
    filterset_class = filtersets.AuditEntryFilterSet


class RoutingRestrictionsView(AuditedAPIMixin, generics.RetrieveUpdateAPIView):
    """The three checkboxes of the Routing Restrictions dialog (one object: GET, PUT, PATCH)."""

    serializer_class = serializers.RoutingRestrictionsSerializer
    queryset = RoutingRestrictions.objects.all()

    def get_object(self):
        return RoutingRestrictions.load()

    def perform_update(self, serializer):
        with open_relay_guard(self.request):
            serializer.save()
