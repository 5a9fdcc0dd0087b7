"""API of what the policy turns into: revisions, exports, relayd nodes, the tester and the self-test."""

from collections.abc import Mapping

from django.core.exceptions import ValidationError
from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound
from rest_framework.response import Response
from rest_framework.views import APIView

from policy import audit, daemons, revision_feed
from policy.api.permissions import (
    NodeReportPermission,
    NodeReportThrottle,
    ReaderPermission,
    RelaydExportPermission,
    RolePermission,
    SecretsReaderPermission,
    node_token,
)
from policy.api.views import AuditedAPIMixin, open_relay_guard
from policy.exports import FORMATS, build, export, latest_revision
from policy.forms import CheckForm
from policy.models import PolicyRevision, RelayNode, SelfTestRun
from policy.revisions import rollback_to
from policy.selftests import SelfTestRateLimited, SelfTestRefused, default_target, latest_serial, run_selftest
from policy.tester import check


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


class RevisionViewSet(AuditedAPIMixin, viewsets.ReadOnlyModelViewSet):
    """Policy revisions; rolling back to one makes a new revision."""

    queryset = PolicyRevision.objects.all()
    lookup_field = "serial"
    permission_classes = [RolePermission]

    def get_permissions(self):
        # A revision's snapshot holds the SMTP password hashes: like relayd's export, editors only.
        return [SecretsReaderPermission()] if self.action == "retrieve" else super().get_permissions()

    def get_serializer_class(self):
        return RevisionSerializer if self.action == "list" else RevisionDetailSerializer

    @extend_schema(request=RollbackSerializer, responses={201: RevisionSerializer, 200: RevisionSerializer})
    @action(detail=True, methods=["post"])
    def rollback(self, request, serial=None):
        target = self.get_object()
        body = RollbackSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        audit.update_context(reason=body.validated_data.get("reason") or f"rollback to revision {target.serial}")
        with open_relay_guard(request):
            revision = rollback_to(target.serial)
        if revision is None:
            return Response(RevisionSerializer(latest_revision()).data, status=status.HTTP_200_OK)
        return Response(RevisionSerializer(revision).data, status=status.HTTP_201_CREATED)


class ExportView(AuditedAPIMixin, APIView):
    """The latest revision as relayd's snapshot (JSON, with ETag and 304) or a Postfix/Exim bundle."""

    permission_classes = [RolePermission]

    def get_permissions(self):
        if self.kwargs.get("fmt") == "relayd":
            return [RelaydExportPermission()]
        return super().get_permissions()

    @extend_schema(
        parameters=[
            OpenApiParameter("If-None-Match", OpenApiTypes.STR, OpenApiParameter.HEADER),
            OpenApiParameter(
                "wait",
                OpenApiTypes.INT,
                description=(
                    f"relayd only: with If-None-Match, hold a 304 up to this many seconds (at most "
                    f"{revision_feed.MAX_WAIT}) and answer at once when a new revision commits. Needs the "
                    "ASGI server (docs/deploy/); a plain WSGI server answers at once."
                ),
            ),
        ],
        responses={(200, "application/octet-stream"): OpenApiTypes.BINARY, 304: None},
    )
    def get(self, request, fmt):
        if fmt not in FORMATS:
            raise NotFound(f"Unknown export format; choose one of {', '.join(FORMATS)}.")
        try:
            # The long poll itself is policy/long_poll.py's, around this view; the value is checked here.
            revision_feed.parse_wait(request.query_params.get("wait"))
        except ValueError as exc:
            raise serializers.ValidationError({"wait": [str(exc)]}) from None
        revision = latest_revision()
        etag = f'"{revision.sha256}"'
        if fmt == "relayd" and etag in _etags(request.headers.get("If-None-Match", "")):
            # Unchanged: nodes poll this, so a 304 is neither a download nor an audit entry.
            return HttpResponse(status=status.HTTP_304_NOT_MODIFIED, headers={"ETag": etag})
        node = node_token(request)
        if node is None:
            download = export(fmt, revision)
        else:
            download = build(fmt, revision)
            daemons.record_fetch(node.node, revision.serial, request.META.get("REMOTE_ADDR"))
        response = HttpResponse(download.body, content_type=download.content_type)
        response["ETag"] = etag
        response["Content-Disposition"] = f'attachment; filename="{download.filename}"'
        return response


def _etags(header: str) -> set[str]:
    return {tag.strip().removeprefix("W/") for tag in header.split(",") if tag.strip()}


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
    node = serializers.CharField(max_length=100)
    # RelayNode.serial is a PositiveIntegerField: PostgreSQL refuses anything above 2**31 - 1 (a 500).
    serial = serializers.IntegerField(min_value=0, max_value=2**31 - 1, allow_null=True, required=False)
    tls = serializers.BooleanField(required=False)
    version = serializers.CharField(max_length=50, allow_blank=True, required=False)
    # The snapshot schemas the node enforces; a relayd that predates reporting them understands schema 1 only.
    schemas = serializers.ListField(
        child=serializers.IntegerField(min_value=1, max_value=1000), min_length=1, max_length=20, required=False
    )
    # Counters land in 64-bit columns (the chart samples).
    counters = serializers.DictField(child=serializers.IntegerField(min_value=0, max_value=2**63 - 1), required=False)
    # The last snapshot the node refused since the policy it enforces, if any (docs/snapshot.md).
    refused_serial = serializers.IntegerField(min_value=0, max_value=2**31 - 1, allow_null=True, required=False)
    refused_reason = serializers.CharField(allow_null=True, allow_blank=True, required=False, trim_whitespace=False)
    # Messages relayed per trusted network and SMTP user (issue 15); daemons.record_report checks its shape.
    usage = serializers.JSONField(required=False)
    # Where the node's clients come from (docs/snapshot.md); daemons.record_report checks the contents.
    proxy_hosts = serializers.ListField(child=serializers.CharField(max_length=100), max_length=1000, required=False)
    top_peer = serializers.JSONField(allow_null=True, required=False)


class DaemonViewSet(AuditedAPIMixin, mixins.ListModelMixin, mixins.CreateModelMixin, viewsets.GenericViewSet):
    """relayd nodes: list them with their state, or (as a node) report status."""

    queryset = RelayNode.objects.all()
    serializer_class = NodeSerializer

    def get_permissions(self):
        return [NodeReportPermission()] if self.action == "create" else [RolePermission()]

    def get_throttles(self):
        return [NodeReportThrottle()] if self.action == "create" else super().get_throttles()

    def get_serializer_context(self):
        states = {status.node.pk: status.state for status in daemons.node_statuses()}
        return {**super().get_serializer_context(), "states": states}

    @extend_schema(
        request=NodeReportSerializer,
        responses={
            201: NodeSerializer,
            403: OpenApiResponse(description="Not a node token, or a node token reporting for another node."),
            409: OpenApiResponse(description="A new node past RELAYADMIN_MAX_NODES."),
            429: OpenApiResponse(description="More reports than RELAYADMIN_NODE_REPORT_RATE from this token."),
        },
        description="Report a relayd node's status. Node tokens only, each for the node name bound to it.",
    )
    def create(self, request, *args, **kwargs):
        body = NodeReportSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        bound = node_token(request).node
        if body.validated_data["node"].strip() != bound:
            self.permission_denied(request, message=f"This token reports for node “{bound}” only.")
        try:
            daemons.admit(bound)
        except daemons.TooManyNodes as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_409_CONFLICT)
        try:
            node = daemons.record_report(
                body.validated_data, request.META.get("REMOTE_ADDR"), token=node_token(request)
            )
        except ValidationError as exc:
            raise serializers.ValidationError(exc.message_dict) from None
        return Response(self.get_serializer(node).data, status=status.HTTP_201_CREATED)


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


class CheckView(AuditedAPIMixin, APIView):
    """Would this relay? relayd's own decision on the current policy. GET takes query parameters."""

    # A question, not a change: POST is allowed to every reader, read-only tokens included.
    permission_classes = [ReaderPermission]

    @extend_schema(parameters=[CheckQuerySerializer], responses=CheckResultSerializer)
    def get(self, request):
        return self.answer(request.query_params)

    @extend_schema(request=CheckQuerySerializer, responses=CheckResultSerializer)
    def post(self, request):
        return self.answer(request.data)

    def answer(self, data):
        if not isinstance(data, Mapping):
            return Response(
                {"detail": "Send an object with client, recipient and optionally local_address, authenticated."},
                status=status.HTTP_400_BAD_REQUEST,
            )
        form = CheckForm(data)  # the page's validation, so the messages are the same
        if not form.is_valid():
            return Response(form.errors, status=status.HTTP_400_BAD_REQUEST)
        result = check(form.probe())
        verdict = result.verdict
        body = {
            "allowed": verdict.allowed,
            "reply": verdict.reply,
            "code": verdict.code,
            "enhanced": verdict.enhanced,
            "rule": verdict.rule,
            "detail": verdict.detail,
            "route": verdict.route,
            "notes": list(result.notes),
        }
        return Response(body)


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
            self.context["latest_serial"] = latest_serial()
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


class SelfTestViewSet(
    AuditedAPIMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.CreateModelMixin, viewsets.GenericViewSet
):
    """Open-relay self-tests: run one (editors; configured targets only; rate-limited) or read results."""

    queryset = SelfTestRun.objects.all()
    serializer_class = SelfTestSerializer
    permission_classes = [RolePermission]

    def create(self, request, *args, **kwargs):
        body = self.get_serializer(data=request.data)
        body.is_valid(raise_exception=True)
        try:
            run = run_selftest(
                body.validated_data.get("target") or default_target(),
                user=request.user,
                domain=body.validated_data.get("domain", ""),
            )
        except SelfTestRateLimited as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_429_TOO_MANY_REQUESTS)
        except SelfTestRefused as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_400_BAD_REQUEST)
        return Response(self.get_serializer(run).data, status=status.HTTP_201_CREATED)
