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
from policy.api.serializers import (
    CheckQuerySerializer,
    CheckResultSerializer,
    NodeReportSerializer,
    NodeSerializer,
    RevisionDetailSerializer,
    RevisionSerializer,
    RollbackSerializer,
    SelfTestSerializer,
)
from policy.api.views import AuditedAPIMixin, open_relay_guard
from policy.downloads import FORMATS, build, export, latest_revision, record_export
from policy.forms import CheckForm
from policy.models import PolicyRevision, RelayNode, SelfTestRun
from policy.revisions import republish_for, rollback_to
from policy.selftests import SelfTestRateLimited, SelfTestRefused, default_target, run_selftest
from policy.tester import check


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
            if not daemons.record_fetch(node.node, revision.serial, request.META.get("REMOTE_ADDR")):
                record_export(fmt, revision)
        response = HttpResponse(download.body, content_type=download.content_type)
        response["ETag"] = etag
        response["Content-Disposition"] = f'attachment; filename="{download.filename}"'
        return response


def _etags(header: str) -> set[str]:
    return {tag.strip().removeprefix("W/") for tag in header.split(",") if tag.strip()}


class DaemonViewSet(
    AuditedAPIMixin, mixins.ListModelMixin, mixins.CreateModelMixin, mixins.DestroyModelMixin, viewsets.GenericViewSet
):
    """relayd nodes: list them with their state, (as a node) report status, or forget one taken out of service."""

    queryset = RelayNode.objects.all()
    serializer_class = NodeSerializer
    lookup_field = "name"
    lookup_value_regex = "[^/]+"

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
        try:
            report = daemons.parse_report(request.data)
        except ValidationError as exc:
            raise serializers.ValidationError(exc.message_dict) from None
        bound = node_token(request).node
        if report.node != bound:
            self.permission_denied(request, message=f"This token reports for node “{bound}” only.")
        try:
            node = daemons.record_report(report, request.META.get("REMOTE_ADDR"), token=node_token(request))
        except daemons.TooManyNodes as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_409_CONFLICT)
        republish_for(node)
        return Response(self.get_serializer(node).data, status=status.HTTP_201_CREATED)

    @extend_schema(
        description="Forget a node taken out of service: its status and samples go, and its place under "
        "RELAYADMIN_MAX_NODES is free. A node still running reappears with its next report; revoke its token "
        "to stop it. Editors only."
    )
    def destroy(self, request, *args, **kwargs):
        return super().destroy(request, *args, **kwargs)

    def perform_destroy(self, instance):
        daemons.forget(instance)


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
